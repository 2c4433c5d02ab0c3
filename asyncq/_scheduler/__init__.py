"""The scheduler's pure parts: cron specs and asynq's Go-format option strings."""
