#!/usr/bin/env python3
"""Lists the Rust functions longer than a limit, and the files longer than another (issue 23).

A function's length counts its lines from the one holding `fn` to the one holding its closing
brace; the attributes and doc comment above it do not count. Comments, strings (raw ones too),
byte strings and character literals are skipped while matching braces, so a brace inside one is
not taken for code. A file's length counts every line, its unit tests included.

  hack/long-functions.py [PATH...]         functions over 80 lines and files over 600 under PATH
                                           (default: src); exit 1 when there is any
  hack/long-functions.py --max-fn N --max-file N [PATH...]
  hack/long-functions.py --all [PATH...]   every function, longest first
"""

import argparse
import os
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def tokens(text):
    """(token, line) for each code token of `text`: identifiers, and single punctuation."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            # Block comments nest in Rust.
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += text[i] == "\n"
                    i += 1
        elif m := re.compile(r'b?r(#*)"').match(text, i):
            end = text.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            line += text.count("\n", i, end)
            i = end
        elif c == '"' or text.startswith('b"', i):
            i += 1 if c == '"' else 2
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                line += text[i] == "\n"
                i += 1
            i += 1
        elif c == "'" or text.startswith("b'", i):
            # A character literal, or a lifetime (`'a`, no closing quote after one character).
            start = i + (1 if c == "'" else 2)
            m = re.compile(r"\\(x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]*\}|.)'|[^\\']'").match(text, start)
            if m:
                i = m.end()
            else:
                m = IDENT.match(text, start)
                i = m.end() if m else start
        elif m := IDENT.match(text, i):
            yield m.group(), line
            i = m.end()
        else:
            yield c, line
            i += 1


def functions(text):
    """(name, first line, last line) of every function with a body in `text`, nested ones too."""
    toks = list(tokens(text))
    found = []
    for k, (tok, line) in enumerate(toks):
        if tok != "fn" or k + 1 >= len(toks) or not IDENT.fullmatch(toks[k + 1][0]):
            continue  # `fn(...)` pointer types have no name
        name = toks[k + 1][0]
        depth, j = 0, k + 2
        # The body opens at the first `{` outside the signature's (), [] and <>; a `;` there
        # first means a declaration without a body.
        while j < len(toks):
            t = toks[j][0]
            if t in "([":
                depth += 1
            elif t in ")]":
                depth -= 1
            elif depth == 0 and t in "{;":
                break
            j += 1
        if j >= len(toks) or toks[j][0] == ";":
            continue
        braces = 0
        while j < len(toks):
            t = toks[j][0]
            braces += (t == "{") - (t == "}")
            if braces == 0:
                break
            j += 1
        found.append((name, line, toks[j][1]))
    return found


def rust_files(paths):
    for path in paths:
        if os.path.isfile(path):
            yield path
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".rs"):
                    yield os.path.join(root, f)


def main():
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("--max-fn", type=int, default=80)
    parser.add_argument("--max-file", type=int, default=600)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("paths", nargs="*", default=["src"])
    args = parser.parse_args()
    rows, long_files = [], []
    for path in rust_files(args.paths):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        lines = text.count("\n") + (not text.endswith("\n") and text != "")
        if lines > args.max_file:
            long_files.append((lines, path))
        for name, first, last in functions(text):
            rows.append((last - first + 1, f"{path}:{first}", name))
    rows.sort(key=lambda r: (-r[0], r[1]))
    shown = rows if args.all else [r for r in rows if r[0] > args.max_fn]
    for length, where, name in shown:
        print(f"{length:5}  {where}  fn {name}")
    for lines, path in sorted(long_files, reverse=True):
        print(f"{lines:5}  {path}  (file)")
    return 1 if not args.all and (shown or long_files) else 0


if __name__ == "__main__":
    sys.exit(main())
