"""History visibility: the past of an object is read only by those who may see its present.

Until now a version was shown to whoever row-level security let see that version alone, so
the public still read the public versions of an object whose owner had since set off_kode 2
(and an authority the versions of an object handed to another one). From here a viewer
reads a past version — history, `asof` on items and single items, tiles and exports, which
all read the history views — only when the viewer may also see the object's newest version:
its current version, or for a deleted object the version it was deleted in. Both are decided
by the theme's own policy (GeoFA's off_kode, the role/municipality/CVR scope, activation,
assignments), so a version never public stays hidden from the public when the object is made
public, and an object deleted while public keeps its public history (the tombstone a GeoFA
consumer reads).

Per theme (`datamodel.storage.history_views_sql(theme, rule=True)`):
- `ly.<table>_er_seneste(versions_id)`: whether a version is its object's newest (SECURITY
  DEFINER, answering only for a version the caller names);
- the history views (`ly.hist_…`, `ly.offentlig_hist_…`) apply the rule
  (`datamodel.storage.past_rule`). The current views, and so the plans of current items and
  tiles, are unchanged. A theme made later gets the rule from `storage.theme_storage`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op

from datamodel import storage, themes

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: The themes whose storage exists at this revision (0009 made them).
THEMES = (6101, 6119, 6120, 6121)


def upgrade() -> None:
    for temakode in THEMES:
        for stmt in storage.history_views_sql(themes.by_temakode(temakode), rule=True):
            op.execute(stmt)


def downgrade() -> None:
    for temakode in THEMES:
        theme = themes.by_temakode(temakode)
        for stmt in storage.history_views_sql(theme, rule=False):
            op.execute(stmt)
        op.execute(f"DROP FUNCTION IF EXISTS {storage.newest_function(theme)}")
