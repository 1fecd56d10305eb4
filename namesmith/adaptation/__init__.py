"""Names in the style of a few examples: a background prior and a small list adapted onto it."""
