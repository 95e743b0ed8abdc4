"""The Hacker News slice: the newest items of the HN API, loaded by dlt into `raw_hackernews.items`."""
