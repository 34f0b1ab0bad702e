"""Secrets planted in a job on every path they might leave it by (its LM's URL, key and headers, its environment,
its argv, a question, an error message, evaluation metadata), and the pieces of them no viewer, recording or export
may ever hold."""

SECRET_JOB = r"""
import os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import dspy
import dspy_top

handle = dspy_top.instrument()
base = os.environ["SIM_URL"]
root = base[: -len("/v1")]
lm = dspy.LM("openai/sim-local", api_base=base.replace("http://", "http://alice:url-pass-1234@"),
             api_key="explicit-lm-key-5678", cache=False, num_retries=0,
             extra_headers={"X-Auth-Token": "xauth-header-9012", "Ocp-Apim-Subscription-Key": "apim-header-3456",
                            "Cookie": "session=cookie-header-7890"})
dspy.configure(lm=lm)
program = dspy.ChainOfThought("question -> answer")
# An LM error whose message holds the environment's key (the sim echoes the unknown path).
broken = dspy.LM("openai/sim-local", api_base=root + "/" + os.environ["OPENAI_API_KEY"] + "/v1", api_key="sim",
                 cache=False, num_retries=0)


def calls():
    program(question=os.environ["QUESTION"])
    with dspy.context(lm=broken):
        try:
            program(question="this call fails")
        except Exception:
            pass


calls()
devset = [dspy.Example(question="What is 1 + 2?", answer="3").with_inputs("question")]
evaluate = dspy.Evaluate(devset=devset, metric=lambda example, prediction, trace=None: 1.0)
evaluate(program, callback_metadata={"metric_key": "eval_full", "api_key": "metadata-key-2468",
                                     "note": "token=metadata-token-1357"})
print("READY", handle.socket_path, flush=True)
while sys.stdin.readline().strip() == "again":  # the same calls again (a viewer or agent watching now)
    calls()
    print("DONE", flush=True)
"""

SECRET_ARGV = [
    "--api-key",
    "sk-proj-ArgvKey0123456789abcdefXYZ",
    "--token=argv-token-value-11",
    "--password",
    "argv-password-22",
    "--openai-api-key=argv-openai-key-33",
]
SECRET_ENV = {
    "OPENAI_API_KEY": "sk-proj-EnvKey0123456789abcdefXYZ",
    "MY_SERVICE_TOKEN": "service-token-value-44",
    "DATABASE_URL": "postgres://svc:database-pass-55@db:5432/app",
}
SECRET_QUESTION = (
    "Summarise: Authorization: Bearer abc123.def456-ghi789 and "
    "AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghijABCDEFGHIJ012345 and "
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
LEAKS = [
    "url-pass-1234",
    "explicit-lm-key-5678",
    "xauth-header-9012",
    "apim-header-3456",
    "cookie-header-7890",
    "EnvKey0123456789",
    "ArgvKey0123456789",
    "argv-token-value-11",
    "argv-password-22",
    "argv-openai-key-33",
    "service-token-value-44",
    "database-pass-55",
    "metadata-key-2468",
    "metadata-token-1357",
    "abc123.def456-ghi789",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_0123456789abcdefghij",
    "dozjgNryP4J3jVmNHl0w5N",
]


def start_secret_job(sim_url: str, runtime, config, **env: str):
    """SECRET_JOB with its secrets, on the simulated LM at `sim_url`, serving in `runtime` (more of its
    environment in `env`); it prints `READY <socket>`, makes its calls again at each `again` line on
    stdin (then prints `DONE`), and exits at any other line."""
    import os
    import subprocess
    import sys

    from tests.helpers.line_jobs import REPO

    environment = {
        **os.environ,
        **SECRET_ENV,
        "SIM_URL": sim_url,
        "QUESTION": SECRET_QUESTION,
        "DSPY_TOP_RUNTIME_DIR": str(runtime),
        "PYTHONPATH": str(REPO),
        "DSPY_TOP_CONFIG": str(config),
        **env,
    }
    environment.pop("DSPY_TOP", None)
    return subprocess.Popen(
        [sys.executable, "-c", SECRET_JOB, *SECRET_ARGV],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
