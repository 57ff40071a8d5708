#!/usr/bin/perl
# Regenerate the Simplified Chinese (zh-Hans) texts of the built-in
# catalog, conf/mqttapi_catalog.json, from its Traditional Chinese
# (zh-Hant) texts with OpenCC's t2s conversion (Debian: apt-get install
# opencc).
#
#     perl conf/gen_zh_hans.pl            # rewrite the catalog in place
#     perl conf/gen_zh_hans.pl --check    # exit 1 if it is out of date
#
# Every entry with a "zh-Hant" text gets a "zh-Hans" text right after it,
# field by field; a "zh-Hans" text of an entry without "zh-Hant" is
# dropped.  The "zh-Hans" language is declared after "zh-Hant" when it is
# missing (its aliases, once there, are left as they are).  Everything
# else is kept, in order; the file is written in its one layout (two
# spaces of indent, arrays of plain values on one line), so a check of an
# unchanged catalog finds no difference.  Core Perl only.

use strict;
use warnings;

use File::Basename ();
use File::Spec;
use IPC::Open2 ();
use JSON::PP ();

my $CATALOG = File::Spec->catfile(File::Basename::dirname(__FILE__),
                                  'mqttapi_catalog.json');
my $FROM = 'zh-Hant';
my $TO = 'zh-Hans';
my @TO_ALIASES = ('zh-Hans', 'zh', 'zh-CN', 'zh-SG');
my $NOTE = "the \"$TO\" texts are generated from the \"$FROM\" ones by "
         . "conf/gen_zh_hans.pl (OpenCC t2s): edit the \"$FROM\" texts, "
         . "then run it";

my $check = @ARGV && $ARGV[0] eq '--check';

# ---------------------------------------------------------------------------
# JSON with the order of keys kept: an object is [ 'obj', [key, value]... ],
# an array [ 'arr', value... ], a string, number or literal a scalar ref
# holding its JSON text as it was.
# ---------------------------------------------------------------------------

my $STRING = JSON::PP->new->allow_nonref;

sub parse_value {
    my ($s) = @_;
    $$s =~ /\G\s*/gc;
    if ($$s =~ /\G\{/gc) {
        return [ 'obj', parse_members($s, '}', sub {
            $$s =~ /\G\s*("(?:[^"\\]|\\.)*")\s*:/gc
                or die "catalog: a key expected at offset " . pos($$s) . "\n";
            my $key = $STRING->decode($1);
            return [ $key, parse_value($s) ];
        }) ];
    }
    if ($$s =~ /\G\[/gc) {
        return [ 'arr', parse_members($s, ']', sub { parse_value($s) }) ];
    }
    if ($$s =~ /\G("(?:[^"\\]|\\.)*"
                 |-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)/gcx)
    {
        my $text = $1;
        return \$text;
    }
    die "catalog: a value expected at offset " . pos($$s) . "\n";
}

# the members of an object or an array, up to its closing bracket
sub parse_members {
    my ($s, $close, $member) = @_;
    my @members;
    $$s =~ /\G\s*/gc;
    return () if $$s =~ /\G\Q$close\E/gc;
    do {
        push @members, $member->();
        $$s =~ /\G\s*/gc;
    } while ($$s =~ /\G,/gc);
    $$s =~ /\G\Q$close\E/gc
        or die "catalog: '$close' expected at offset " . pos($$s) . "\n";
    return @members;
}

sub dump_value {
    my ($v, $indent) = @_;
    return $$v if ref $v eq 'SCALAR';
    my ($type, @elts) = @$v;
    return $type eq 'obj' ? '{}' : '[]' unless @elts;
    if ($type eq 'arr' && !grep { ref $_ ne 'SCALAR' } @elts) {
        return '[' . join(', ', map { $$_ } @elts) . ']';
    }
    my $in = $indent . '  ';
    my @lines = $type eq 'obj'
        ? map { "$in${ lit($_->[0]) }: " . dump_value($_->[1], $in) } @elts
        : map { $in . dump_value($_, $in) } @elts;
    my ($open, $close) = $type eq 'obj' ? ('{', '}') : ('[', ']');
    return "$open\n" . join(",\n", @lines) . "\n$indent$close";
}

# a JSON string literal, as a value of the tree
sub lit { my $t = $STRING->encode($_[0]); return \$t }

sub member {
    my ($obj, $key) = @_;
    for my $p (@$obj[1 .. $#$obj]) {
        return $p->[1] if $p->[0] eq $key;
    }
    return undef;
}

# put [key, value] right after "after" (or last), replacing any "key"
sub set_after {
    my ($obj, $after, $key, $value) = @_;
    my @pairs = grep { $_->[0] ne $key } @$obj[1 .. $#$obj];
    my ($at) = grep { $pairs[$_][0] eq $after } 0 .. $#pairs;
    splice @pairs, defined $at ? $at + 1 : scalar @pairs, 0, [ $key, $value ];
    @$obj = ('obj', @pairs);
}

sub drop {
    my ($obj, $key) = @_;
    @$obj = ('obj', grep { $_->[0] ne $key } @$obj[1 .. $#$obj]);
}

# ---------------------------------------------------------------------------
# OpenCC: one run for every text, one text a line
# ---------------------------------------------------------------------------

sub t2s {
    my (@texts) = @_;
    return () unless @texts;
    for (@texts) {
        die "catalog: a \"$FROM\" text spans lines, it cannot be converted\n"
            if /[\r\n]/;
    }
    my $pid = IPC::Open2::open2(my $out, my $in, 'opencc', '-c', 't2s')
        or die "cannot run opencc: $!\n";
    binmode $in, ':encoding(UTF-8)';
    binmode $out, ':encoding(UTF-8)';
    print {$in} map { "$_\n" } @texts;
    close $in;
    my @lines = <$out>;
    close $out;
    waitpid $pid, 0;
    die "opencc -c t2s failed (is the opencc package installed?)\n"
        if $? != 0 || @lines != @texts;
    chomp @lines;
    return @lines;
}

# ---------------------------------------------------------------------------

my $text = do {
    open my $fh, '<:encoding(UTF-8)', $CATALOG or die "$CATALOG: $!\n";
    local $/;
    <$fh>;
};

my $doc = parse_value(\$text);
die "catalog: not an object\n" unless ref $doc eq 'ARRAY' && $doc->[0] eq 'obj';

my $langs = member($doc, 'languages') or die "catalog: no \"languages\"\n";
die "catalog: no \"$FROM\" language\n" unless member($langs, $FROM);
if (!member($langs, $TO)) {
    set_after($langs, $FROM, $TO, [ 'arr', map { lit($_) } @TO_ALIASES ]);
}
set_after($doc, 'default_language', "_$TO", lit($NOTE));

my (@fields, @sources);     # [text object, field], its zh-Hant string
my $errors = member($doc, 'errors') or die "catalog: no \"errors\"\n";

for my $e (@$errors[1 .. $#$errors]) {
    my $t = member($e, 'text') or next;
    my $from = member($t, $FROM);
    if (!$from) {
        drop($t, $TO);
        next;
    }
    my $to = [ 'obj' ];
    for my $p (@$from[1 .. $#$from]) {
        next if $p->[0] =~ /^_/;
        push @$to, [ $p->[0], undef ];
        push @fields, $to->[-1];
        push @sources, $STRING->decode(${ $p->[1] });
    }
    set_after($t, $FROM, $TO, $to);
}

my @converted = t2s(@sources);
$fields[$_][1] = lit($converted[$_]) for 0 .. $#fields;

my $new = dump_value($doc, '') . "\n";

if ($check) {
    exit 0 if $new eq $text;
    print STDERR "$CATALOG: the \"$TO\" texts are not those "
               . "conf/gen_zh_hans.pl makes: run it\n";
    exit 1;
}

exit 0 if $new eq $text;

open my $fh, '>:encoding(UTF-8)', "$CATALOG.tmp" or die "$CATALOG.tmp: $!\n";
print {$fh} $new;
close $fh or die "$CATALOG.tmp: $!\n";
rename "$CATALOG.tmp", $CATALOG or die "$CATALOG: $!\n";
print "$CATALOG: \"$TO\" texts written\n";
