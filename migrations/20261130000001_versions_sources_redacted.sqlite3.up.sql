-- Builds before upstream.RedactURL replaced a user name given alone in a
-- proxy URL, which is how a token is given (https://TOKEN@proxy.example),
-- recorded it in the source of the versions they fetched, which the API
-- shows. Replace it as RedactURL does; a password was always redacted.
-- The user name is what comes between "://" and the first "@", when that
-- holds no "/" (else the "@" is in the path) and no ":" (a user name with
-- its password).
UPDATE versions
	SET source = substr(source, 1, instr(source, '://') + 2) || 'xxxxx' || substr(source, instr(source, '@'))
	WHERE instr(source, '://') > 0 AND instr(source, '@') > instr(source, '://')
	AND instr(substr(source, instr(source, '://') + 3, instr(source, '@') - instr(source, '://') - 3), '/') = 0
	AND instr(substr(source, instr(source, '://') + 3, instr(source, '@') - instr(source, '://') - 3), ':') = 0;
