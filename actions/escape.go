package actions

import "golang.org/x/mod/module"

// unescapePath is module.UnescapePath, and unescapeVersion
// module.UnescapeVersion, without their allocations in the common case.
//
// In the escaped form of a module path or version, '!' followed by a
// lower-case letter stands for that letter in upper case, and upper-case
// letters may not appear. A string with neither '!' nor an upper-case letter,
// all ASCII, is therefore its own unescaped form, and it is valid exactly
// when module.EscapePath (module.EscapeVersion) accepts it, which for such a
// string checks the same rules as unescaping does and allocates nothing.
// Anything else, valid or not, goes through x/mod, so errors read the same.
func unescapePath(escaped string) (string, error) {
	if isPlain(escaped) {
		if _, err := module.EscapePath(escaped); err == nil {
			return escaped, nil
		}
	}
	return module.UnescapePath(escaped)
}

// unescapeVersion: see unescapePath.
func unescapeVersion(escaped string) (string, error) {
	if isPlain(escaped) {
		if _, err := module.EscapeVersion(escaped); err == nil {
			return escaped, nil
		}
	}
	return module.UnescapeVersion(escaped)
}

// isPlain reports whether s is ASCII with no '!' and no upper-case letter.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '!' || 'A' <= c && c <= 'Z' || c >= 0x80 {
			return false
		}
	}
	return true
}
