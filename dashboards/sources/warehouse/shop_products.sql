-- marts.dim_products: one row per product
select product_id, product_name, product_price, order_count, units_sold, revenue
from marts.dim_products
