"""The echo tool's table: what it was sent, and when.

Revision ID: echo_0001
Revises: (the echo branch's base)
"""
import sqlalchemy as sa
from alembic import op

revision = "echo_0001"
down_revision = None
branch_labels = ("echo",)
depends_on = None

def upgrade():
    op.create_table("echoes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False))

def downgrade():
    op.drop_table("echoes")
