"""The only code that talks to Redis: keys, Lua scripts and the broker verbs."""
