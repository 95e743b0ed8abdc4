-- Every trading date in any drop file has exactly one row in fct_share_prices_daily, and no other dates do.
-- Returns the dates (failures) that are missing from the mart or not in any file.
-- reported in Dagster as an asset check on fct_share_prices_daily (a test with several parents needs to be told)
{{ config(meta={'dagster': {'ref': {'name': 'fct_share_prices_daily'}}}) }}
with

file_dates as (

    select distinct trading_date
    from {{ ref('stg_files__share_prices') }}

),

mart_dates as (

    select trading_date
    from {{ ref('fct_share_prices_daily') }}

)

select
    coalesce(file_dates.trading_date, mart_dates.trading_date) as trading_date,
    file_dates.trading_date is not null as in_files,
    mart_dates.trading_date is not null as in_mart

from file_dates
full outer join mart_dates
    on file_dates.trading_date = mart_dates.trading_date
where file_dates.trading_date is null
    or mart_dates.trading_date is null
