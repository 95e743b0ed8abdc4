-- the live stories (staging.stg_hackernews__stories): the Hacker News mart is per day, the top stories list is per story
select story_id, title, url, author, score, comment_count, posted_at
from staging.stg_hackernews__stories
