"""Schedules: a report run on a cron expression in a time zone, with a misfire policy and a limit of runs at once.

Revision ID: jobs_0002
Revises: jobs_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "jobs_0002"
down_revision = "jobs_0001"
branch_labels = None
depends_on = None

def upgrade():
    op.create_table("job_schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("report", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("misfire", sa.String(8), nullable=False),
        sa.Column("max_running", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float),
        sa.Column("retries", sa.Integer),
        sa.Column("username", sa.String(32)),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("next_ns", sa.BigInteger, nullable=False),
        sa.Column("last_ns", sa.BigInteger))
    op.create_index("ix_job_schedules_next_ns", "job_schedules", ["next_ns"])
    with op.batch_alter_table("job_runs") as t: t.add_column(sa.Column("schedule_id", sa.Integer))
    op.create_index("ix_job_runs_schedule_id", "job_runs", ["schedule_id"])

def downgrade():
    op.drop_index("ix_job_runs_schedule_id", table_name="job_runs")
    with op.batch_alter_table("job_runs") as t: t.drop_column("schedule_id")
    op.drop_index("ix_job_schedules_next_ns", table_name="job_schedules")
    op.drop_table("job_schedules")
