"""Route names, in one place."""

LOGIN = "/login"
CHAT = "/"
