-- marts.fct_revenue_daily: one row per order date
select order_date, order_count, customer_count, units_sold, revenue
from marts.fct_revenue_daily
