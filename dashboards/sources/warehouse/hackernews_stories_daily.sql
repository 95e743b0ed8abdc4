-- marts.fct_hackernews_stories_daily: one row per day stories were posted
select posted_date, stories_posted, total_score, average_score, comments_on_stories, comments_posted
from marts.fct_hackernews_stories_daily
