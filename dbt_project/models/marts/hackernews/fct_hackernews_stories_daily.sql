with recursive

stories as (

    select * from {{ ref('stg_hackernews__stories') }}

),

comments as (

    select * from {{ ref('stg_hackernews__comments') }}

),

-- every comment under each story, at any depth: a top-level comment replies to the story, a deeper one to a
-- comment, so walk down one level of replies at a time. A comment whose chain leaves the loaded items (a story
-- loaded before the dev window, a dead or deleted parent) is under no story here.
thread_comments as (

    select
        stories.story_id,
        comments.comment_id

    from stories
    inner join comments
        on comments.parent_id = stories.story_id

    -- union, not union all: a cycle in bad data ends the walk instead of looping
    union

    select
        thread_comments.story_id,
        replies.comment_id

    from thread_comments
    inner join comments as replies
        on replies.parent_id = thread_comments.comment_id

),

story_threads as (

    select
        story_id,
        count(*) as thread_comments

    from thread_comments
    group by story_id

),

-- days are UTC days, as on the site's /front?day=
daily_stories as (

    select
        cast(timezone('UTC', stories.posted_at) as date) as posted_date,
        count(*) as stories_posted,
        sum(stories.score) as total_score,
        avg(stories.score) as average_score,
        sum(coalesce(story_threads.thread_comments, 0)) as comments_on_stories,
        sum(stories.comment_count) as reported_comments_on_stories

    from stories
    left join story_threads
        on stories.story_id = story_threads.story_id
    group by 1

),

daily_comments as (

    select
        cast(timezone('UTC', posted_at) as date) as posted_date,
        count(*) as comments_posted

    from comments
    group by 1

),

posting_days as (

    select posted_date from daily_stories
    union all
    select posted_date from daily_comments

),

-- every day from the first to the last story or comment, so a quiet day shows as 0, not as a gap
calendar as (

    select cast(unnest(generate_series(min(posted_date), max(posted_date), interval 1 day)) as date) as posted_date
    from posting_days

),

final as (

    select

        ----------  ids
        calendar.posted_date,

        ----------  stories posted that day
        cast(coalesce(daily_stories.stories_posted, 0) as integer) as stories_posted,
        cast(coalesce(daily_stories.total_score, 0) as bigint) as total_score,
        cast(daily_stories.average_score as double) as average_score,
        cast(coalesce(daily_stories.comments_on_stories, 0) as integer) as comments_on_stories,
        cast(coalesce(daily_stories.reported_comments_on_stories, 0) as bigint) as reported_comments_on_stories,

        ----------  comments posted that day, on any story
        cast(coalesce(daily_comments.comments_posted, 0) as integer) as comments_posted

    from calendar
    left join daily_stories
        on calendar.posted_date = daily_stories.posted_date
    left join daily_comments
        on calendar.posted_date = daily_comments.posted_date

)

select * from final
