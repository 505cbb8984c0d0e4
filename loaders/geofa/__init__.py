"""GeoFA exchange: the theme's formats (GeoJSON as WFS delivers it, GML, GeoPackage, Shapefile
with feltnavn10 and temakode), a local FKG-shaped stand-in with an HTTP facade, the SQL API and
WFS client, and the two-way sync."""
