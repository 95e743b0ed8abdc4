-- marts.fct_share_prices_daily: one row per trading date
select trading_date, share_price, daily_return, moving_average_7d, moving_average_30d, loaded_at
from marts.fct_share_prices_daily
