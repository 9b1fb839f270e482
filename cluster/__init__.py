"""A Data Science Pipelines (KFP v2) server as a client sees it: submit runs, upload versions, schedule
retraining, find the server from a workbench. Nothing here starts a server or runs a step."""
