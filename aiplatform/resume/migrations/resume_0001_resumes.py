"""Resumes: each user's named resumes, every saved version of each (a JSON Resume document), with a note of why it was saved.

Revision ID: resume_0001
Revises: (the resume branch's base)
"""
import sqlalchemy as sa
from alembic import op

revision = "resume_0001"
down_revision = None
branch_labels = ("resume",)
depends_on = None

def upgrade():
    op.create_table("resumes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("username", "name", "version", name="uq_resumes_username_name_version"))

def downgrade():
    op.drop_table("resumes")
