#!/usr/bin/env python3
"""Generates src/lex/keywords.rs and tools/grammar-keywords.inc from tools/keywords.txt.

Run from compiler/: python3 tools/gen-keywords.py
It also pastes the keyword lists into src/parse/grammar.lalrpop between its markers.
"""
rows = [l.split('\t') for l in open('tools/keywords.txt').read().splitlines()
        if l and not l.startswith('#')]


def rel(s):
    s = s.strip()
    if s == '-':
        return None
    a, b = s.split('.')
    return f"Release::new({a}, {b})"


out = ['//! The keyword table: every word that was a keyword in some relayd release.', '//!',
       '//! Generated from `compiler/tools/keywords.txt` by `compiler/tools/gen-keywords.py`; edit',
       '//! the table, not this file. `since`/`until` are the releases in which the word was a',
       "//! keyword (relayd's sorted `keywords[]` table, per the reference's history).", '',
       'use relaydc_spec::Release;', '', '/// A keyword of any release.',
       '#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]', 'pub enum Kw {']
out += [f"    {r[1]}," for r in rows]
out += ['}', '',
        '/// (text, keyword, first release where it is a keyword, first release where it no longer is)',
        'pub const KEYWORDS: &[(&str, Kw, Release, Option<Release>)] = &[']
for r in rows:
    u = rel(r[3])
    out.append(f'    ("{r[0]}", Kw::{r[1]}, {rel(r[2])}, {("Some(" + u + ")") if u else "None"}),')
out += ['];', '']
out.append(open('tools/keywords-impl.rs.in').read())
open('src/lex/keywords.rs', 'w').write('\n'.join(out))

# Paste both keyword lists into the grammar between their markers.
import re
g = open('src/parse/grammar.lalrpop').read()
ext = '\n'.join(f'        "{r[0]}" => Tok::Kw(Kw::{r[1]}),' for r in rows)
names = '\n'.join(f'    "{r[0]}" => Kw::{r[1]},' for r in rows)
g = re.sub(r'(// @keywords-begin[^\n]*\n).*?(\s*// @keywords-end)', lambda m: m.group(1) + ext + m.group(2), g, flags=re.S)
g = re.sub(r'(// @kwname-begin[^\n]*\n).*?(\s*// @kwname-end)', lambda m: m.group(1) + names + m.group(2), g, flags=re.S)
open('src/parse/grammar.lalrpop', 'w').write(g)
