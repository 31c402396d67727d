"""The run itself: process, program, parameters, git, logs and secrets."""
