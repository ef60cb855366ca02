package actions

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// oneLineTests are reasons and the lines oneLine makes of them.
var oneLineTests = []struct {
	msg, want string
}{
	{"not found: example.com/m@v1.0.0: no versions", "not found: example.com/m@v1.0.0: no versions"},
	{
		"not found: example.com/m@main: reading https://up.example/example.com/m/@v/main.info: 404 Not Found\n\tserver response: not found: unknown revision main",
		"not found: example.com/m@main: reading https://up.example/example.com/m/@v/main.info: 404 Not Found; server response: not found: unknown revision main",
	},
	{"bad gateway: m@v1.0.0: reading x: 500\n\tserver response:\n\tline one\n\tline two", "bad gateway: m@v1.0.0: reading x: 500; server response: line one; line two"},
	{"gone: m@v1.0.0: deleted: a\r\n\r\n\tb\tc\x1b[0m\n", "gone: m@v1.0.0: deleted: a; b c\uFFFD[0m"},
	{"gone: m@v1.0.0: deleted: \xff\xfe", "gone: m@v1.0.0: deleted: \uFFFD"},
	{"gone: " + strings.Repeat("x", 700), "gone: " + strings.Repeat("x", maxReasonLine-len("gone: ...")) + "..."},
	{"gone: " + strings.Repeat("é", 400), "gone: " + strings.Repeat("é", (maxReasonLine-len("gone: ..."))/2) + "..."},
}

func TestOneLine(t *testing.T) {
	for _, tt := range oneLineTests {
		got := oneLine(tt.msg)
		if got != tt.want {
			t.Errorf("oneLine(%q)\n = %q\nwant %q", tt.msg, got, tt.want)
		}
		if len(got) > maxReasonLine || !utf8.ValidString(got) || !printableLine(got) {
			t.Errorf("oneLine(%q) = %q: not a line the go command prints whole", tt.msg, got)
		}
	}
}
