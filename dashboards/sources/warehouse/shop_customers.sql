-- marts.dim_customers: one row per customer
select customer_id, first_name, last_name, email, order_count, lifetime_value, first_order_date, last_order_date
from marts.dim_customers
