"""The pure core of tsrevel: models, decisions and use cases; imports only the standard library and attrs."""
