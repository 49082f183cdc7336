"""The web page served by `skr serve`: templates, one script and one stylesheet."""
