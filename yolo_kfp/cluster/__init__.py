"""The client side: a Data Science Pipelines (KFP v2) server (submit runs, upload versions, schedule retraining,
find the server from a workbench) and a served model (predict). Nothing here starts a server or runs a step."""
