"""The example site's one app: a hit counter, a cached fragment and a session."""
