"""The JSON API's endpoints, one router per group: `models` (the server and its models), `generate` (names
drawn, and "more like these"), `names` (score, classify, similarity, heat map). `namesmith.serve.app` puts
them under /api/v1."""
