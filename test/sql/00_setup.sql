-- The extension installs cleanly; the regression database has no dispatcher.
CREATE EXTENSION pgwa;
SELECT extversion FROM pg_extension WHERE extname = 'pgwa';
SELECT mode, raw_mode FROM pgwa.mode();
SHOW pgwa.mode;
