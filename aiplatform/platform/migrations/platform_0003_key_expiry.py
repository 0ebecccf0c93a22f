"""API keys may expire: `expires_ns`, NULL for a key that never does.

Revision ID: platform_0003
Revises: platform_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "platform_0003"
down_revision = "platform_0002"
branch_labels = None
depends_on = None

def upgrade():
    op.add_column("api_keys", sa.Column("expires_ns", sa.BigInteger))

def downgrade():
    op.drop_column("api_keys", "expires_ns")
