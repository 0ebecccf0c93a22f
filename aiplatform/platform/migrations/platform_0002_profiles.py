"""Profile fields on users: display name, email and free-form profile.

Revision ID: platform_0002
Revises: platform_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "platform_0002"
down_revision = "platform_0001"
branch_labels = None
depends_on = None

def upgrade():
    op.add_column("users", sa.Column("display_name", sa.String(100), nullable=False, server_default=""))
    op.add_column("users", sa.Column("email", sa.String(254), nullable=False, server_default=""))
    op.add_column("users", sa.Column("profile", sa.JSON, nullable=False, server_default="{}"))

def downgrade():
    for name in ("profile", "email", "display_name"): op.drop_column("users", name)
