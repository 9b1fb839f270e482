"""A run's parameters: the table that declares them, the rules that check them, and the preflight step.

Reading or checking a parameter imports no KFP and no heavy library."""
