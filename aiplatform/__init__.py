"""A Jupyter-centric AI platform: trading, analysis and generation tools for notebooks, Voila apps and papermill jobs

Modules:

- `aiplatform.codegen.migrations.codegen_0001_generations`: Claude code generations: prompt, context, answer, checks, test run, tokens and cost.
- `aiplatform.jobs.migrations.jobs_0001_runs`: Job runs: a report template run with its parameters, its life cycle, attempts and outputs.
- `aiplatform.jobs.migrations.jobs_0002_schedules`: Schedules: a report run on a cron expression in a time zone, with a misfire policy and a limit of runs at once.
- `aiplatform.platform.migrations.platform_0001_users_and_keys`: Users with a role, and their API keys.
- `aiplatform.platform.migrations.platform_0002_profiles`: Profile fields on users: display name, email and free-form profile.
- `aiplatform.platform.migrations.platform_0003_key_expiry`: API keys may expire: `expires_ns`, NULL for a key that never does.
- `aiplatform.resume.migrations.resume_0001_resumes`: Resumes: each user's named resumes, every saved version of each (a JSON Resume document), with a note of why it was saved."""

__version__ = "0.1.0"

def load_ipython_extension(ipython):
    "`%load_ext aiplatform`: register the platform's magics (see `aiplatform.platform.magics`)."
    from .platform.magics import load_ipython_extension
    load_ipython_extension(ipython)
