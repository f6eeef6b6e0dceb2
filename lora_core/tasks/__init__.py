"""The tasks: their data (the article's linear map, the digits), their models, and the registry that puts a
task's rules and its code together."""
