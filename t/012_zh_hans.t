#!/usr/bin/perl
# Simplified Chinese (zh-Hans) in the built-in catalog.
#
#   * the zh-Hans texts are what conf/gen_zh_hans.pl makes of the zh-Hant
#     ones with OpenCC's t2s: regenerated, no difference (skipped, with
#     one line saying so, when opencc is not installed);
#   * every entry with a zh-Hant text has a zh-Hans one, field for field,
#     and zh-Hans is a language of the catalog;
#   * negotiation through a real nginx: zh-TW, zh-HK, zh-MO, zh-Hant and
#     their longer tags get zh-Hant; zh-CN, zh-SG, bare zh, zh-Hans and
#     every other zh tag get zh-Hans, with its Description and
#     Content-Language: zh-Hans; q-values between the two; a code without
#     Chinese text stays English; the headers stay English.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy ();
use File::Temp ();
use MqttapiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $REPO = repo_dir();
my $CATALOG_FILE = "$REPO/conf/mqttapi_catalog.json";
my $GEN = "$REPO/conf/gen_zh_hans.pl";

my ($catalog, $entries) = builtin_catalog();
my %entry = %$entries;

# ---------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------

ok($catalog->{languages}{'zh-Hans'}, 'zh-Hans is a language of the catalog');
for my $tag (qw(zh-Hans zh zh-CN zh-SG)) {
    ok((grep { $_ eq $tag } @{ $catalog->{languages}{'zh-Hans'} || [] }),
       "zh-Hans: alias $tag");
}

my $with_zh = 0;
for my $e (@{ $catalog->{errors} }) {
    my $c = $e->{code} // $e->{regex};
    my ($hant, $hans) = @{ $e->{text} || {} }{qw(zh-Hant zh-Hans)};
    if (!$hant) {
        ok(!$hans, "$c: no zh-Hans text without a zh-Hant one");
        next;
    }
    $with_zh++;
    ok($hans, "$c: a zh-Hans text beside the zh-Hant one") or next;
    is(join(',', sort keys %$hans), join(',', sort keys %$hant), "$c: the same fields");
    for my $k (sort keys %$hant) {
        ok(length($hans->{$k} // ''), "$c: zh-Hans $k not empty");
    }
}
cmp_ok($with_zh, '>=', 14, 'every code of the Chinese seed has Chinese text');

# ---------------------------------------------------------------------------
# Regenerated with OpenCC: no difference
# ---------------------------------------------------------------------------

SKIP: {
    my $opencc = grep { -x "$_/opencc" } split /:/, $ENV{PATH} // '';
    skip 'opencc is not installed (apt-get install opencc): the zh-Hans texts '
       . 'are not regenerated', 1 unless $opencc;

    subtest 'regenerated with OpenCC t2s: no difference' => sub {
        my $out = `perl '$GEN' --check 2>&1`;
        is($?, 0, 'gen_zh_hans.pl --check: the committed catalog is up to date')
            or diag $out;

        # a copy with the zh-Hans texts taken out gets them back, byte for byte
        my $dir = File::Temp::tempdir('mqttapi-zh-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        mkdir "$dir/conf" or die "$dir/conf: $!";
        File::Copy::copy($GEN, "$dir/conf/gen_zh_hans.pl") or die "copy: $!";
        my $orig = do {
            open my $fh, '<:raw', $CATALOG_FILE or die $!;
            local $/;
            <$fh>;
        };
        (my $stripped = $orig) =~ s/,\n *"zh-Hans": \{\n(?: +"[a-z]+": "[^"\n]*",?\n)+ +\}//g;
        isnt($stripped, $orig, 'the copy without zh-Hans texts differs (sanity)');
        open my $fh, '>:raw', "$dir/conf/mqttapi_catalog.json" or die $!;
        print {$fh} $stripped;
        close $fh;
        $out = `perl '$dir/conf/gen_zh_hans.pl' 2>&1`;
        is($?, 0, 'gen_zh_hans.pl on the copy') or diag $out;
        my $regen = do {
            open my $in, '<:raw', "$dir/conf/mqttapi_catalog.json" or die $!;
            local $/;
            <$in>;
        };
        ok($regen eq $orig, 'the copy regenerated is the committed catalog');

        # a zh-Hans text edited by hand is found out
        (my $edited = $orig) =~ s/("zh-Hans": \{\n +"description": ")/$1X/;
        isnt($edited, $orig, 'a copy with an edited zh-Hans text (sanity)');
        open $fh, '>:raw', "$dir/conf/mqttapi_catalog.json" or die $!;
        print {$fh} $edited;
        close $fh;
        $out = `perl '$dir/conf/gen_zh_hans.pl' --check 2>&1`;
        isnt($?, 0, 'gen_zh_hans.pl --check fails on it');
        like($out, qr/not those conf\/gen_zh_hans\.pl makes/, '... and says why');
    };
}

# ---------------------------------------------------------------------------
# Negotiation through nginx
# ---------------------------------------------------------------------------

my $ng = start_nginx(http => emulator_gateway());
my $GW = $ng->port(0);

my @cases = (
    # [Accept-Language, expected Content-Language]
    ['zh-CN', 'zh-Hans'],
    ['zh-SG', 'zh-Hans'],
    ['zh', 'zh-Hans'],
    ['ZH', 'zh-Hans'],
    ['zh-cn', 'zh-Hans'],
    ['zh-Hans', 'zh-Hans'],
    ['zh-Hans-CN', 'zh-Hans'],
    ['zh-Hans-SG', 'zh-Hans'],
    ['zh-MY', 'zh-Hans'],
    ['zh-Latn-pinyin', 'zh-Hans'],
    ['zh-TW', 'zh-Hant'],
    ['zh-HK', 'zh-Hant'],
    ['zh-MO', 'zh-Hant'],
    ['zh-Hant', 'zh-Hant'],
    ['zh-Hant-TW', 'zh-Hant'],
    ['zh-Hant-CN', 'zh-Hant'],
    ['zh-TW;q=0.5, zh-CN', 'zh-Hans'],
    ['zh-CN;q=0.5, zh-TW', 'zh-Hant'],
    ['zh-CN;q=0, zh-TW;q=0.1', 'zh-Hant'],
    ['en, zh-CN', 'en'],
    ['zh-CN, en', 'zh-Hans'],
    ['en;q=0.5, zh;q=0.8', 'zh-Hans'],
    ['zh-CN;q=0', 'en'],
    ['fr', 'en'],
);

for my $c (@cases) {
    my ($al, $want) = @$c;
    my $w = "Accept-Language \"$al\"";
    my $r = get($GW, '/?mqttemu_code=InstanceNotFound', 'Accept-Language' => $al);
    is($r->{status}, 400, "$w: status");
    is(h($r, 'Content-Language'), $want, "$w: Content-Language $want");
    my $d = json_decode($r->{body}) || {};
    my $desc = $want eq 'en' ? undef : $entry{InstanceNotFound}{text}{$want}{description};
    is($d->{Description}, $desc, "$w: Description");
    is(h($r, 'X-MQTTAPI-Error-Cause'), $entry{InstanceNotFound}{text}{en}{cause},
       "$w: the headers stay English");
}

# the two scripts really differ for this code (else the test above proves
# nothing about which one was chosen)
isnt($entry{InstanceNotFound}{text}{'zh-Hans'}{description},
     $entry{InstanceNotFound}{text}{'zh-Hant'}{description},
     'InstanceNotFound: the zh-Hans and zh-Hant descriptions differ (sanity)');

# a patterned code, its parameter in the Simplified text
{
    my $r = get($GW, '/?mqttemu_code=InvalidParameter.GroupId', 'Accept-Language' => 'zh-CN');
    my $want = $entry{'InvalidParameter.%s'}{text}{'zh-Hans'}{description} =~ s/%s/GroupId/gr;
    is(h($r, 'Content-Language'), 'zh-Hans', 'InvalidParameter.GroupId [zh-CN]: zh-Hans');
    is((json_decode($r->{body}) || {})->{Description}, $want,
       'InvalidParameter.GroupId [zh-CN]: Description with the parameter');
}

# a code without Chinese text: English, and Content-Language says so
{
    my $r = get($GW, '/?mqttemu_code=QueryTokenOverFlow', 'Accept-Language' => 'zh-CN');
    is(h($r, 'Content-Language'), 'en', 'QueryTokenOverFlow [zh-CN]: no Chinese text, en');
    ok(!exists((json_decode($r->{body}) || {})->{Description}),
       'QueryTokenOverFlow [zh-CN]: no Description');
}

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/,
       'error log: no alert, crit, emerg, crash');

done_testing();
