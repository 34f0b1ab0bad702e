"""What a budget does, in one light leaf module the job's guard, the configuration, `dspy-top run` and the viewer
(its model and its header, drawn in the first frame) all read."""

# A budget warns once this fraction of it is spent (an alert of level "80"), and again once all of it is.
WARN_AT = 0.8
# What a job does once its budget is spent: warn, raise BudgetExceeded, or stop the run with BudgetStop.
ON_EXCEED = ("warn", "raise", "stop")
