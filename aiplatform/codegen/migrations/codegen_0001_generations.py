"""Claude code generations: prompt, context, answer, checks, test run, tokens and cost.

Revision ID: codegen_0001
Revises: (the codegen branch's base)
"""
import sqlalchemy as sa
from alembic import op

revision = "codegen_0001"
down_revision = None
branch_labels = ("codegen",)
depends_on = None

def upgrade():
    op.create_table("generations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("username", sa.String(32)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("notebook", sa.String(500)),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("tests", sa.Text, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("test_run", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float, nullable=False))
    op.create_index("ix_generations_created_ns", "generations", ["created_ns"])

def downgrade():
    op.drop_index("ix_generations_created_ns", table_name="generations")
    op.drop_table("generations")
