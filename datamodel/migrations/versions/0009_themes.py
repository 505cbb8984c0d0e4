"""Themes: the storage of every theme from its descriptor, and themes 6119, 6120 and 6121.

Until now the shelter's storage was written out by hand (0001-0003, 0006, 0008). From here
on there is one storage path, `datamodel.storage.theme_storage(theme)`, generic over a
theme's descriptor (`datamodel.themes`):

- the shelter's storage is re-expressed through it: its table stays as it is, and its
  guard, views, write trigger, policies and grants are made again from the descriptor. They
  come out as they were (tests/test_storage.py compares the catalog before and after);
- the functions every theme shares: `ly.as_multipolygon` (an area as stored, refused with
  GEOS's reason when invalid), `ly.kommune_for_area` (the municipality holding the largest
  part) and `ly.actor_reads_personal` (who may read contact persons and phone numbers);
- 6119 evakueringscenter, 6120 midlertidig overnatning and 6121 større udendørs
  arrangementer get their storage, the same way.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from alembic import op

from datamodel import storage, themes

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NEW_THEMES = (6119, 6120, 6121)


def upgrade() -> None:
    for stmt in storage.SHARED_FUNCTIONS:
        op.execute(stmt)
    for stmt in storage.theme_storage(themes.by_temakode(6101), create_table=False,
                                      history_rule=False):
        op.execute(stmt)
    for temakode in NEW_THEMES:
        for stmt in storage.theme_storage(themes.by_temakode(temakode), history_rule=False):
            op.execute(stmt)


def downgrade() -> None:
    for temakode in reversed(NEW_THEMES):
        for stmt in storage.drop_theme_storage(themes.by_temakode(temakode)):
            op.execute(stmt)
    op.execute("DROP FUNCTION IF EXISTS ly.as_multipolygon(geometry), "
               "ly.kommune_for_area(geometry), ly.actor_reads_personal()")
