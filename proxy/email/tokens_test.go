package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeIssue makes "T(id)" values and counts its calls.
func fakeIssue(calls *int) func(context.Context, []string) ([]string, error) {
	return func(_ context.Context, ids []string) ([]string, error) {
		*calls++
		if len(ids) > TokensBatch {
			return nil, fmt.Errorf("batch of %d", len(ids))
		}
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = "T(" + id + ")"
		}
		return out, nil
	}
}

func TestTokensCommand(t *testing.T) {
	tests := []struct {
		name, in, column, want string
	}{
		{name: "one id per line", in: "user-42\nuser-43\r\n\nuser 44\n", want: "user_id,vigie_token\nuser-42,T(user-42)\nuser-43,T(user-43)\nuser 44,T(user 44)\n"},
		{name: "quoted id with a comma", in: "\"a,b\"\n", want: "user_id,vigie_token\n\"a,b\",\"T(a,b)\"\n"},
		{name: "ids are not trimmed", in: " user-42\n", want: "user_id,vigie_token\n\" user-42\",T( user-42)\n"},
		{name: "byte order mark", in: "\ufeffuser-42\n", want: "user_id,vigie_token\nuser-42,T(user-42)\n"},
		{name: "CSV with header: columns kept", in: "Email Address,User_ID\nada@example.org,u1\nbob@example.org,u2\n",
			want: "Email Address,User_ID,vigie_token\nada@example.org,u1,T(u1)\nbob@example.org,u2,T(u2)\n"},
		{name: "CSV with BOM and header", in: "\ufeffuser_id,email\nu1,a@example.org\n", want: "user_id,email,vigie_token\nu1,a@example.org,T(u1)\n"},
		{name: "existing vigie_token column refreshed", in: "email,user_id,VIGIE_TOKEN\na@example.org,u1,old\n", want: "email,user_id,VIGIE_TOKEN\na@example.org,u1,T(u1)\n"},
		{name: "named column", column: "USERID", in: "Email,USERID\na@example.org,u1\n", want: "Email,USERID,vigie_token\na@example.org,u1,T(u1)\n"},
		{name: "unicode ids", in: "josé\n名前\n", want: "user_id,vigie_token\njosé,T(josé)\n名前,T(名前)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			calls := 0
			err := TokensCommand(context.Background(), strings.NewReader(tt.in), &out, TokensOptions{Column: tt.column, Issue: fakeIssue(&calls)})
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("output\n%s\nwant\n%s", out.String(), tt.want)
			}
		})
	}
}

func TestTokensCommandRefuses(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // in the error message
	}{
		{name: "empty input", in: "", want: []string{"no user ids"}},
		{name: "header only", in: "user_id,email\n", want: []string{"no user ids"}},
		{name: "not UTF-8", in: "user-42\nab\xff\xfe\n", want: []string{"line 2: not valid UTF-8"}},
		{name: "not UTF-8 in another column", in: "user_id,name\nu1,Jos\xe9\n", want: []string{"line 2: not valid UTF-8"}},
		{name: "Latin-1 file", in: "user_id\nfran\xe7ois\n", want: []string{"line 2: not valid UTF-8"}},
		{name: "empty id", in: "user-42\n\"\"\n", want: []string{"line 2: empty user id"}},
		{name: "blank id", in: "user_id,email\nu1,a@example.org\n  ,b@example.org\n", want: []string{"line 3: empty user id"}},
		{name: "comma in plain list", in: "user-42\nuser-43,x\n", want: []string{"line 2: 2 fields; give one user id per line"}},
		{name: "ragged CSV", in: "user_id,email\nu1\n", want: []string{"line 2: 1 fields, the header has 2"}},
		{name: "no id column", in: "email,name\na@example.org,Ada\n", want: []string{"line 1: the header has no \"user_id\" column"}},
		{name: "bad quoting", in: "user-42\n\"unterminated\n", want: []string{"line 2: not valid CSV"}},
		{name: "several lines named", in: "a\n\"\"\nb\n\"\"\n", want: []string{"line 2: empty user id", "line 4: empty user id"}},
		{name: "many errors bounded", in: "a\n" + strings.Repeat("\"\"\n", 30), want: []string{"line 21: empty user id", "and 10 more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			calls := 0
			err := TokensCommand(context.Background(), strings.NewReader(tt.in), &out, TokensOptions{Issue: fakeIssue(&calls)})
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v, want ErrBadInput", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "line 22") {
				t.Fatalf("error lists more than %d lines: %v", maxInputErrors, err)
			}
			if out.Len() != 0 || calls != 0 {
				t.Fatalf("refused input still produced %q (%d Issue calls)", out.String(), calls)
			}
		})
	}
}

func TestTokensCommandBatches(t *testing.T) {
	var in strings.Builder
	for i := range 2*TokensBatch + 1 {
		fmt.Fprintf(&in, "u%d\n", i)
	}
	var out bytes.Buffer
	calls := 0
	if err := TokensCommand(context.Background(), strings.NewReader(in.String()), &out, TokensOptions{Issue: fakeIssue(&calls)}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); calls != 3 || lines != 2*TokensBatch+2 {
		t.Fatalf("%d calls, %d lines", calls, lines)
	}
	short := func(context.Context, []string) ([]string, error) { return []string{"x"}, nil }
	if err := TokensCommand(context.Background(), strings.NewReader("a\nb\n"), &out, TokensOptions{Issue: short}); err == nil {
		t.Fatal("accepted too few values")
	}
	failing := func(context.Context, []string) ([]string, error) { return nil, errors.New("server down") }
	if err := TokensCommand(context.Background(), strings.NewReader("a\n"), &out, TokensOptions{Issue: failing}); err == nil || !strings.Contains(err.Error(), "server down") {
		t.Fatalf("err = %v", err)
	}
	if err := TokensCommand(context.Background(), strings.NewReader("a\n"), &out, TokensOptions{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no Issue: %v", err)
	}
}

func TestUserIDProblem(t *testing.T) {
	for id, want := range map[string]string{"user-42": "", " x ": "", "": "empty user id", " \t": "empty user id", "a\xff": "not valid UTF-8"} {
		if got := UserIDProblem(id); got != want {
			t.Errorf("UserIDProblem(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestSignRecipients(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	vals, err := s.SignRecipients("shop", []string{"u1", "u2"}, func(id string) string { return "p_" + id }, time.Time{})
	if err != nil || len(vals) != 2 {
		t.Fatal(vals, err)
	}
	for i, want := range []string{"p_u1", "p_u2"} {
		if got, err := s.VerifyRecipient("shop", vals[i], t0); err != nil || got != want {
			t.Fatalf("value %d: %q, %v", i, got, err)
		}
	}
	if _, err := s.SignRecipients("shop", []string{"u1", " "}, func(id string) string { return "p_" + id }, time.Time{}); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "user id 1: empty") {
		t.Fatalf("blank id: %v", err)
	}
}

func TestTokensCommandPreferenceColumn(t *testing.T) {
	prefs := func(_ context.Context, ids []string) ([]string, error) {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = "P(" + id + ")"
		}
		return out, nil
	}
	tests := []struct{ name, in, want string }{
		{"one id per line", "u1\nu2\n", "user_id,vigie_token,vigie_preference\nu1,T(u1),P(u1)\nu2,T(u2),P(u2)\n"},
		{"both columns refreshed", "vigie_preference,user_id,vigie_token\nold,u1,old\n", "vigie_preference,user_id,vigie_token\nP(u1),u1,T(u1)\n"},
		{"only the preference column there", "user_id,vigie_preference\nu1,old\n", "user_id,vigie_preference,vigie_token\nu1,P(u1),T(u1)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			calls := 0
			if err := TokensCommand(context.Background(), strings.NewReader(tt.in), &out, TokensOptions{Issue: fakeIssue(&calls), Preferences: prefs}); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("output\n%s\nwant\n%s", out.String(), tt.want)
			}
		})
	}
}
