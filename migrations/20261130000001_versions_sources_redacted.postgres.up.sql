-- Builds before upstream.RedactURL replaced a user name given alone in a
-- proxy URL, which is how a token is given (https://TOKEN@proxy.example),
-- recorded it in the source of the versions they fetched, which the API
-- shows. Replace it as RedactURL does; a password was always redacted.
UPDATE versions SET source = regexp_replace(source, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@:]*@', '\1xxxxx@')
	WHERE source ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*@';
