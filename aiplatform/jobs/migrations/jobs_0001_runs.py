"""Job runs: a report template run with its parameters, its life cycle, attempts and outputs.

Revision ID: jobs_0001
Revises: (the jobs branch's base)
"""
import sqlalchemy as sa
from alembic import op

revision = "jobs_0001"
down_revision = None
branch_labels = ("jobs",)
depends_on = None

def upgrade():
    op.create_table("job_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(200), unique=True),  # a schedule's (definition, time): never two runs of one
        sa.Column("report", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("username", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("backoff_s", sa.Float, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("queued_ns", sa.BigInteger, nullable=False),
        sa.Column("started_ns", sa.BigInteger),
        sa.Column("finished_ns", sa.BigInteger),
        sa.Column("out_dir", sa.String(500)),
        sa.Column("error", sa.Text),
        sa.Column("worker", sa.String(100)),
        sa.Column("cancel", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_job_runs_status", "job_runs", ["status"])
    op.create_index("ix_job_runs_queued_ns", "job_runs", ["queued_ns"])

def downgrade():
    op.drop_index("ix_job_runs_queued_ns", table_name="job_runs")
    op.drop_index("ix_job_runs_status", table_name="job_runs")
    op.drop_table("job_runs")
