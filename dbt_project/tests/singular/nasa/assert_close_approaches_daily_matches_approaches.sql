-- Every day with close approaches has one summary row, counting the same objects as fct_close_approaches.
-- Returns the days (failures) where the summary is missing, extra, or counts differently.
-- reported in Dagster as an asset check on fct_close_approaches_daily (a test with several parents needs to be told)
{{ config(meta={'dagster': {'ref': {'name': 'fct_close_approaches_daily'}}}) }}
with

approaches as (

    select
        approach_date,
        count(distinct neo_reference_id) as objects

    from {{ ref('fct_close_approaches') }}
    group by approach_date

),

daily as (

    select approach_date, objects
    from {{ ref('fct_close_approaches_daily') }}

)

select
    coalesce(approaches.approach_date, daily.approach_date) as approach_date,
    approaches.objects as objects_in_approaches,
    daily.objects as objects_in_summary

from approaches
full outer join daily
    on approaches.approach_date = daily.approach_date
where approaches.objects is distinct from daily.objects
