100 * touched / nullif(customers, 0)
