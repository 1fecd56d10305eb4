"""How name-like a string is: the held-out NLL, scores, classification by label, and figures."""
