-- row counts and freshness (the newest day of data in it) per mart
select 'fct_share_prices_daily' as mart, 'share prices' as source, count(*) as row_count,
    max(trading_date)::date as newest_data, max(loaded_at)::timestamp as last_loaded_at
from marts.fct_share_prices_daily
union all
select 'fct_close_approaches', 'asteroids', count(*), max(approach_date)::date, null::timestamp
from marts.fct_close_approaches
union all
select 'fct_close_approaches_daily', 'asteroids', count(*), max(approach_date)::date, null::timestamp
from marts.fct_close_approaches_daily
union all
select 'dim_asteroids', 'asteroids', count(*), max(last_feed_date)::date, null::timestamp
from marts.dim_asteroids
union all
select 'fct_orders', 'shop', count(*), max(order_date)::date, max(loaded_at)::timestamp
from marts.fct_orders
union all
select 'fct_revenue_daily', 'shop', count(*), max(order_date)::date, null::timestamp
from marts.fct_revenue_daily
union all
select 'dim_customers', 'shop', count(*), max(last_order_date)::date, null::timestamp
from marts.dim_customers
union all
select 'dim_products', 'shop', count(*), null::date, null::timestamp
from marts.dim_products
union all
select 'fct_hackernews_stories_daily', 'hacker news', count(*), max(posted_date)::date, null::timestamp
from marts.fct_hackernews_stories_daily
