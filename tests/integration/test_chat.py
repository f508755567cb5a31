"""The chat protocol (spec/protocol.md) seen by library clients."""

import datetime

import pytest

from helpers import (Client, async_test, check_error, check_keys, check_login,
                     check_logout, check_say, check_session, check_time, check_user_list,
                     close_all, connect_many)
from wsraw import RawWS


# -- the seed session ------------------------------------------------------------

@async_test()
async def test_seed_session(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        # A logs in as the seed's other user (\u732a\u732a)
        await a.send('{"type":"login","name":"\\u732a\\u732a"}')
        ul = await a.recv()
        check_user_list(ul)
        assert len(ul["user_list"]) == 1 and ul["user_list"][0]["name"] == "\u732a\u732a", ul
        uid_a = ul["user_list"][0]["uid"]
        me = await a.recv()
        check_login(me, uid=uid_a, name="\u732a\u732a")
        check_session(await a.recv(), uid_a)

        # B logs in as mynick: user_list (A first, mynick last), then login
        await b.send('{"type":"login","name":"mynick"}')
        ul = await b.recv()
        check_user_list(ul)
        check_keys(ul, ["type", "user_list"])
        assert [u["name"] for u in ul["user_list"]] == ["\u732a\u732a", "mynick"], ul
        assert ul["user_list"][0]["uid"] == uid_a
        for u in ul["user_list"]:
            check_keys(u, ["uid", "name"])
        uid_b = ul["user_list"][1]["uid"]
        assert uid_b != uid_a
        login_b = await b.recv()
        check_login(login_b, uid=uid_b, name="mynick")
        check_keys(login_b, ["type", "uid", "name", "time"])
        check_session(await b.recv(), uid_b)

        # A gets the login broadcast
        login_seen_by_a = await a.recv()
        check_login(login_seen_by_a, uid=uid_b, name="mynick")
        assert login_seen_by_a == login_b

        # B says "oi, pessoal !" to all; both receive the same say
        await b.send('{"type":"say","to_uid":"all","content":"oi, pessoal !"}')
        for c in (b, a):
            m = await c.recv()
            check_say(m, from_uid=uid_b, to_uid="all", content="oi, pessoal !")
            # exactly these keys in this order; the contract lets a server
            # append more (e.g. an id) after them
            check_keys(m, ["type", "from_uid", "to_uid", "content", "time"])
            check_time(m["time"], slack=3)
        await a.silent(0.3)
        await b.silent(0.1)
    finally:
        await close_all([a, b])


@async_test()
async def test_time_is_process_local_time(make_server):
    """time is the server process's local time (its TZ). JST-9 is a POSIX TZ
    string (UTC+9) that needs no tzdata."""
    import os
    env = dict(os.environ, TZ="JST-9")
    srv = make_server(env=env)
    c = await Client.connect(srv.ws_port)
    try:
        await c.send({"type": "login", "name": "tz"})
        await c.expect("user_list")
        login = await c.expect("login")
        await c.expect("session")
        await c.send({"type": "say", "content": "hora?"})
        say = await c.expect("say")
        now_jst = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=9)
        for m in (login, say):
            check_time(m["time"], now=now_jst.replace(tzinfo=None), slack=5)
    finally:
        await c.close()


@async_test()
async def test_uids_unique_and_stable(server):
    clients = await connect_many(server.ws_port, 5)
    try:
        uids = []
        for i, c in enumerate(clients):
            await c.login("u%d" % i)
            uids.append(c.uid)
        assert len(set(uids)) == 5, uids
        await clients[2].say("hi")
        for c in clients:
            # drain logins of later clients, then the say
            while True:
                m = await c.recv()
                if m["type"] == "say":
                    break
                assert m["type"] == "login", m
            check_say(m, from_uid=uids[2], to_uid="all", content="hi")
    finally:
        await close_all(clients)


@async_test()
async def test_not_logged_in_client_gets_no_broadcasts(server):
    a, n = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await a.say("hello room")
        await a.expect("say")
        await n.silent(0.3)
        users = await n.login("n")
        assert [u["name"] for u in users] == ["a", "n"]
    finally:
        await close_all([a, n])


# -- user_list order -------------------------------------------------------------------

@async_test()
async def test_user_list_order(server):
    cs = await connect_many(server.ws_port, 5)
    try:
        names = ["first", "second", "third", "fourth"]
        for c, name in zip(cs, names):
            await c.login(name)
        # second leaves; a fifth client sees the others in join order, itself last
        await cs[1].close()
        for c in (cs[0], cs[2], cs[3]):
            while True:
                m = await c.recv()
                if m["type"] == "logout":
                    break
            check_logout(m, uid=cs[1].uid)
        users = await cs[4].login("fifth")
        assert [u["name"] for u in users] == ["first", "third", "fourth", "fifth"], users
        assert [u["uid"] for u in users] == [cs[0].uid, cs[2].uid, cs[3].uid, cs[4].uid]
    finally:
        await close_all(cs)


@async_test()
async def test_user_list_contains_everyone_in_join_order(server):
    cs = await connect_many(server.ws_port, 4)
    try:
        seen = []
        for i, c in enumerate(cs):
            users = await c.login("n%d" % i)
            seen.append(users)
        for i, users in enumerate(seen):
            assert [u["name"] for u in users] == ["n%d" % j for j in range(i + 1)], users
            assert [u["uid"] for u in users] == [c.uid for c in cs[:i + 1]], users
    finally:
        await close_all(cs)


# -- rooms -------------------------------------------------------------------------------

@async_test()
async def test_rooms_number_and_string_same_room(server):
    a, b, c, d = await connect_many(server.ws_port, 4)
    try:
        await a.login("a5", room_id=5)
        users = await b.login("b5", room_id="5")
        assert [u["name"] for u in users] == ["a5", "b5"], users
        check_login(await a.recv(), uid=b.uid, name="b5")

        users = await c.login("c1")                  # default room "1"
        assert [u["name"] for u in users] == ["c1"], users
        users = await d.login("d05", room_id="05")   # "05" is not "5"
        assert [u["name"] for u in users] == ["d05"], users

        await b.say("in room five")
        for x in (b, a):
            check_say(await x.recv(), from_uid=b.uid, to_uid="all", content="in room five")
        await c.say("in room one")
        check_say(await c.recv(), from_uid=c.uid, content="in room one")
        # a and b got nothing from room 1, c and d nothing from room 5
        await a.say("sentinel")
        for x in (a, b):
            check_say(await x.recv(), from_uid=a.uid, content="sentinel")
        await c.silent(0.2)
        await d.silent(0.1)

        # a logout is only seen in its room
        await b.close()
        check_logout(await a.recv(), uid=b.uid)
        await c.silent(0.2)
    finally:
        await close_all([a, b, c, d])


@async_test()
async def test_default_room_is_1(server):
    a, b, c = await connect_many(server.ws_port, 3)
    try:
        await a.login("default")
        users = await b.login("num", room_id=1)
        assert [u["name"] for u in users] == ["default", "num"], users
        users = await c.login("str", room_id="1")
        assert [u["name"] for u in users] == ["default", "num", "str"], users
    finally:
        await close_all([a, b, c])


@async_test()
async def test_room_64_bytes_ok(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        room = "r" * 64
        await a.login("a", room_id=room)
        users = await b.login("b", room_id=room)
        assert [u["name"] for u in users] == ["a", "b"]
    finally:
        await close_all([a, b])


@pytest.mark.parametrize("room", [True, False, None, [5], {"id": 5}, ""],
                         ids=["true", "false", "null", "array", "object", "empty"])
@async_test()
async def test_bad_room_id(server, room):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "login", "name": "x", "room_id": room})
        await c.error("bad_json")
        # still open and not logged in: a valid login works
        users = await c.login("x")
        assert [u["name"] for u in users] == ["x"]
    finally:
        await c.close()


@async_test()
async def test_room_id_too_long(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "login", "name": "x", "room_id": "r" * 65})
        await c.error()
        await c.login("x")
    finally:
        await c.close()


# -- private messages -----------------------------------------------------------------

@pytest.mark.parametrize("as_string", [False, True], ids=["number", "string"])
@async_test()
async def test_private_message(server, as_string):
    a, b, c = await connect_many(server.ws_port, 3)
    try:
        await a.login("a")
        await b.login("b")
        await c.login("c")
        await a.recv(); await a.recv(); await b.recv()   # logins of b, c / c
        target = str(b.uid) if as_string else b.uid
        await a.say("psst", to_uid=target)
        for x in (b, a):
            m = await x.recv()
            check_say(m, from_uid=a.uid, to_uid=b.uid, content="psst")
        # c got nothing: its next message is the public sentinel
        await a.say("public")
        m = await c.recv()
        check_say(m, from_uid=a.uid, to_uid="all", content="public")
        for x in (a, b):
            check_say(await x.recv(), content="public")
    finally:
        await close_all([a, b, c])


@async_test()
async def test_private_message_to_self_delivered_once(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        await a.say("me", to_uid=a.uid)
        check_say(await a.recv(), from_uid=a.uid, to_uid=a.uid, content="me")
        await a.say("next")
        check_say(await a.recv(), to_uid="all", content="next")
        check_say(await b.recv(), to_uid="all", content="next")
    finally:
        await close_all([a, b])


@async_test()
async def test_private_message_other_room_or_unknown(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b", room_id="other")
        for target in (b.uid, str(b.uid), 4294967295, 1):
            if target == 1 and a.uid == 1:
                continue
            await a.say("nope", to_uid=target)
            await a.error("no_such_user")
        await b.silent(0.2)
        await a.say("ok")
        check_say(await a.recv(), content="ok")
    finally:
        await close_all([a, b])


@async_test()
async def test_private_message_to_departed_user(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        await b.close()
        check_logout(await a.recv(), uid=b.uid)
        await a.say("too late", to_uid=b.uid)
        await a.error("no_such_user")
    finally:
        await close_all([a, b])


@async_test()
async def test_say_without_to_uid_is_public(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        await a.send({"type": "say", "content": "implicit"})
        for x in (a, b):
            check_say(await x.recv(), from_uid=a.uid, to_uid="all", content="implicit")
    finally:
        await close_all([a, b])


# -- errors --------------------------------------------------------------------------------

async def still_open(c, name="ok"):
    """After an error the connection works: a login (or a say) succeeds."""
    if c.uid is None:
        await c.login(name)
    else:
        await c.say("still open")
        check_say(await c.recv(), from_uid=c.uid, content="still open")


@pytest.mark.parametrize("text", [
    "not json", "{", '{"type":"login"', "[1,2]", '"login"', "42", "null", "true",
    "{}", '{"name":"x"}', "", " ",
], ids=["text", "brace", "truncated", "array", "string", "number", "null", "true",
        "empty_object", "missing_type", "empty", "space"])
@pytest.mark.parametrize("logged_in", [False, True], ids=["anon", "logged"])
@async_test()
async def test_bad_json(server, text, logged_in):
    c = await Client.connect(server.ws_port)
    try:
        if logged_in:
            await c.login("me")
        await c.send(text)
        await c.error("bad_json")
        await still_open(c)
    finally:
        await c.close()


@async_test()
async def test_binary_message_is_bad_json(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send(b'{"type":"login","name":"bin"}')
        await c.error("bad_json")
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("type_,codes", [
    ("dance", "unknown_type"), ("LOGIN", "unknown_type"), ("Say", "unknown_type"),
    ("user_list", "unknown_type"), ("logout", "unknown_type"),
    ("", ("unknown_type", "bad_json")), (5, ("unknown_type", "bad_json")),
    (None, ("unknown_type", "bad_json")),
], ids=["dance", "LOGIN", "Say", "user_list", "logout", "empty", "number", "null"])
@async_test()
async def test_unknown_type(server, type_, codes):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.send({"type": type_})
        await c.error(codes)
        await still_open(c)
    finally:
        await c.close()


@async_test()
async def test_not_logged_in(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "say", "to_uid": "all", "content": "hi"})
        await c.error("not_logged_in")
        await still_open(c)
        await still_open(c)
    finally:
        await c.close()


@async_test()
async def test_already_logged_in(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("once")
        await b.login("b")
        await a.recv()
        await a.send({"type": "login", "name": "twice"})
        await a.error("already_logged_in")
        await b.silent(0.2)              # no second login broadcast
        await still_open(a)
        check_say(await b.recv(), from_uid=a.uid, content="still open")
    finally:
        await close_all([a, b])


@pytest.mark.parametrize("name", [
    None, "", " ", "  \t  ", "a" * 33, "\u00e7" * 33, "a\x01b", "a\nb", "a\x7fb", "\x00",
    "li\r\nne", "a\u009bb", " " + "c" * 33 + " ",
], ids=["missing", "empty", "space", "spaces_tab", "33_ascii", "33_multibyte",
        "ctrl_01", "newline", "del", "nul", "crlf_inside", "c1_control", "33_padded"])
@async_test()
async def test_bad_name(server, name):
    c = await Client.connect(server.ws_port)
    try:
        msg = {"type": "login"}
        if name is not None:
            msg["name"] = name
        await c.send(msg)
        await c.error("bad_name")
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("name", [
    "a" * 32, "\u00e7" * 32, "\u732a" * 32, "\U0001F600" * 32, " " + "b" * 32 + " ", "x",
    "&" * 32,
], ids=["32_ascii", "32_latin1", "32_cjk", "32_emoji", "32_padded", "one", "32_amp"])
@async_test()
async def test_good_name(server, name):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("watcher")
        users = await b.login(name)
        want = name.strip().replace("&", "&amp;")
        assert users[-1]["name"] == want, users
        check_login(await a.recv(), uid=b.uid, name=want)
    finally:
        await close_all([a, b])


@async_test()
async def test_name_trimmed(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("  padded name  ")
        assert a.name == "padded name"
        users = await b.login("other")
        assert users[0]["name"] == "padded name", users
    finally:
        await close_all([a, b])


@async_test()
async def test_name_escaped_control_char(server):
    """A \\u0000 escape in the JSON is a control character too."""
    c = await Client.connect(server.ws_port)
    try:
        await c.send('{"type":"login","name":"a\\u0000b"}')
        await c.error("bad_name")
        await c.send('{"type":"login","name":"\\u00e9t\\u00e9"}')
        users = await c.expect("user_list")
        assert users["user_list"][-1]["name"] == "\u00e9t\u00e9"
    finally:
        await c.close()


@pytest.mark.parametrize("content", ["", "a" * 4097, "\u00e9" * 4097, "\U0001F600" * 4097],
                         ids=["empty", "4097_ascii", "4097_latin1", "4097_emoji"])
@async_test()
async def test_bad_content(server, content):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.say(content)
        await c.error("bad_content")
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("content", ["a" * 4096, "\u00e9" * 4096, "\u732a" * 4096,
                                     "\U0001F600" * 4096, "x"],
                         ids=["4096_ascii", "4096_latin1", "4096_cjk", "4096_emoji", "one"])
@async_test()
async def test_good_content(server, content):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.say(content)
        check_say(await c.recv(), from_uid=c.uid, content=content)
    finally:
        await c.close()


@async_test()
async def test_content_limit_counts_input_not_escaped_output(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.say("<" * 4096)
        check_say(await c.recv(), content="&lt;" * 4096)
        await c.say("\n" * 4096)
        check_say(await c.recv(), content="<br />\n" * 4096)
    finally:
        await c.close()


@async_test()
async def test_limits_options(make_server):
    srv = make_server("--max-name", "8", "--max-content", "10")
    c = await Client.connect(srv.ws_port)
    try:
        await c.send({"type": "login", "name": "n" * 9})
        await c.error("bad_name")
        await c.login("\u00e7" * 8)
        await c.say("c" * 11)
        await c.error("bad_content")
        await c.say("\u732a" * 10)
        check_say(await c.recv(), content="\u732a" * 10)
    finally:
        await c.close()


@async_test()
async def test_error_goes_only_to_offender(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        await a.send("garbage")
        await a.error("bad_json")
        await a.say("")
        await a.error("bad_content")
        await a.say("visible")
        check_say(await b.recv(), from_uid=a.uid, content="visible")
    finally:
        await close_all([a, b])


# -- escaping ------------------------------------------------------------------------------------

@async_test()
async def test_html_escaping(server):
    a, b = await connect_many(server.ws_port, 2)
    try:
        name = "<b>&\"'</b>"
        esc = "&lt;b&gt;&amp;&quot;&#039;&lt;/b&gt;"
        await a.login(name)
        assert a.name == esc, a.name
        users = await b.login("b")
        assert users[0]["name"] == esc, users
        await a.recv()
        await a.say("<script>alert('x&y')</script> \"q\"")
        want = "&lt;script&gt;alert(&#039;x&amp;y&#039;)&lt;/script&gt; &quot;q&quot;"
        for x in (a, b):
            check_say(await x.recv(), from_uid=a.uid, content=want)
        # already-escaped text is escaped again (no double-decoding)
        await a.say("&amp; &lt;")
        check_say(await a.recv(), content="&amp;amp; &amp;lt;")
    finally:
        await close_all([a, b])


@pytest.mark.parametrize("content,want", [
    ("a\r\nb\nc\rd\n\re", "a<br />\r\nb<br />\nc<br />\rd<br />\n\re"),
    ("x\n\ny", "x<br />\n<br />\ny"),
    ("\n", "<br />\n"),
    ("a\r\n\r\nb", "a<br />\r\n<br />\r\nb"),
    ("<\n>", "&lt;<br />\n&gt;"),
    ("tab\there", "tab\there"),
])
@async_test()
async def test_nl2br(server, content, want):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.say(content)
        check_say(await c.recv(), content=want)
    finally:
        await c.close()


# -- logout ------------------------------------------------------------------------------------

async def two_in_room(port):
    a = await Client.connect(port)
    await a.login("stays")
    return a


@async_test()
async def test_logout_on_close_frame(server):
    a = await two_in_room(server.ws_port)
    b = await Client.connect(server.ws_port)
    try:
        await b.login("leaves")
        await a.expect("login")
        await b.close(1000)
        m = await a.recv()
        check_logout(m, uid=b.uid)
        check_keys(m, ["type", "uid", "time"])
        n = await Client.connect(server.ws_port)
        users = await n.login("new")
        assert [u["name"] for u in users] == ["stays", "new"], users
        await n.close()
    finally:
        await a.close()


@pytest.mark.parametrize("how", ["rst", "fin", "close_frame_raw"])
@async_test()
async def test_logout_on_tcp_close(server, how):
    a = await two_in_room(server.ws_port)
    try:
        raw = RawWS(server.ws_port)
        uid, users = raw.login("raw")
        assert [u["name"] for u in users] == ["stays", "raw"]
        check_login(await a.recv(), uid=uid, name="raw")
        if how == "rst":
            raw.reset()
        elif how == "fin":
            raw.close()
        else:
            raw.send_close(1001)
            f = raw.recv_frame()
            assert f.close_code == 1001, f
            raw.close()
        check_logout(await a.recv(timeout=5), uid=uid)
        await a.silent(0.2)            # exactly one logout
    finally:
        await a.close()


@async_test()
async def test_no_logout_for_anonymous(server):
    a = await two_in_room(server.ws_port)
    try:
        b = await Client.connect(server.ws_port)
        await b.close()
        raw = RawWS(server.ws_port)
        raw.reset()
        await a.say("sentinel")
        check_say(await a.recv(), content="sentinel")
        await a.silent(0.2)
    finally:
        await a.close()


@async_test()
async def test_logout_after_protocol_error(server):
    a = await two_in_room(server.ws_port)
    try:
        raw = RawWS(server.ws_port)
        uid, _ = raw.login("breaks")
        await a.expect("login")
        raw.send_frame(0x3, b"bad opcode")
        code, _ = raw.expect_close()
        assert code == 1002
        check_logout(await a.recv(timeout=5), uid=uid)
    finally:
        await a.close()


# -- ignored input ---------------------------------------------------------------------------

@async_test()
async def test_unknown_keys_ignored(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "login", "name": "k", "color": "red", "extra": {"a": [1, None]}})
        users = await c.expect("user_list")
        assert users["user_list"][-1]["name"] == "k"
        login = await c.expect("login")
        uid = login["uid"]
        await c.expect("session")
        await c.send({"type": "say", "to_uid": "all", "content": "x", "font": 12, "id": [1]})
        check_say(await c.recv(), from_uid=uid, content="x")
    finally:
        await c.close()


@async_test()
async def test_pong_ignored(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "pong"})               # before login: no error
        await c.silent(0.3)
        await c.login("p")
        await c.send({"type": "pong"})
        await c.send('{"type":"pong","extra":1}')
        await c.say("after pong")
        check_say(await c.recv(), content="after pong")
    finally:
        await c.close()


@async_test()
async def test_whitespace_around_json(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send('  \n {"type" : "login" , "name" : "ws"}  \r\n')
        users = await c.expect("user_list")
        assert users["user_list"][-1]["name"] == "ws"
    finally:
        await c.close()


@async_test()
async def test_permessage_deflate_declined_or_working(server):
    """The client offers permessage-deflate; whatever the server decides,
    messages must flow (declined, or implemented fully)."""
    c = await Client.connect(server.ws_port, compression="deflate")
    d = await Client.connect(server.ws_port, compression="deflate")
    try:
        await c.login("deflate")
        await d.login("deflate2")
        await c.recv()
        big = "compressible " * 300
        for content in ("small", big, big + "!"):
            await d.say(content)
            for x in (d, c):
                check_say(await x.recv(), from_uid=d.uid, content=content)
    finally:
        await close_all([c, d])


# -- hostile input ------------------------------------------------------------------------------

# As deep as fits the default 64 KiB --max-message.
@pytest.mark.parametrize("text", [
    "[" * 32000 + "]" * 32000,
    '{"a":' * 10000 + "1" + "}" * 10000,
    '{"type":"login","name":' + "[" * 32000 + "]" * 32000 + "}",
], ids=["deep_array", "deep_object", "deep_name"])
@async_test()
async def test_deeply_nested_json(server, text):
    c = await Client.connect(server.ws_port)
    try:
        await c.send(text)
        await c.error(("bad_json", "bad_name"))
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("to_uid", [-1, 0, 4294967296, 2 ** 64, 1e300, 1.5, "12abc", "", " ",
                                    "-5", True, [], {}],
                         ids=["neg", "zero", "2^32", "2^64", "1e300", "1.5", "12abc", "empty",
                              "space", "neg_str", "true", "array", "object"])
@async_test()
async def test_weird_to_uid(server, to_uid):
    """Never a crash, never delivered to someone else: an error (the code is
    not fixed by the contract for non-uid values) and the connection lives."""
    a, b = await connect_many(server.ws_port, 2)
    try:
        await a.login("a")
        await b.login("b")
        await a.recv()
        await a.send({"type": "say", "to_uid": to_uid, "content": "weird"})
        await a.error(("no_such_user", "bad_json"))
        await a.say("sentinel")
        check_say(await b.recv(), from_uid=a.uid, to_uid="all", content="sentinel")
        check_say(await a.recv(), from_uid=a.uid, to_uid="all", content="sentinel")
        await still_open(a)
    finally:
        await close_all([a, b])


@pytest.mark.parametrize("content", [5, None, [], {}, True],
                         ids=["number", "null", "array", "object", "true"])
@async_test()
async def test_non_string_content(server, content):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.send({"type": "say", "to_uid": "all", "content": content})
        await c.error(("bad_content", "bad_json"))
        await still_open(c)
    finally:
        await c.close()


@async_test()
async def test_missing_content(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.login("me")
        await c.send({"type": "say", "to_uid": "all"})
        await c.error(("bad_content", "bad_json"))
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("name", [5, None, [], {}, True],
                         ids=["number", "null", "array", "object", "true"])
@async_test()
async def test_non_string_name(server, name):
    c = await Client.connect(server.ws_port)
    try:
        await c.send({"type": "login", "name": name})
        await c.error(("bad_name", "bad_json"))
        await still_open(c)
    finally:
        await c.close()


@pytest.mark.parametrize("raw", ['"\\ud800x"', '"x\\udc00"', '"\\ude00\\ud83d"'],
                         ids=["lone_high", "lone_low", "swapped_pair"])
@async_test()
async def test_lone_surrogate_escapes(server, raw):
    """JSON escapes of unpaired surrogates: refused, or replaced; the server
    must never send invalid UTF-8 (the library client would fail with 1007)."""
    a, b = await connect_many(server.ws_port, 2)
    try:
        await b.login("b")
        await a.send('{"type":"login","name":%s}' % raw)
        m = await a.recv()
        if m["type"] == "error":
            check_error(m, ("bad_json", "bad_name"))
            await a.login("a")
        else:
            assert m["type"] == "user_list", m
            await a.expect("login")
        await b.expect("login")
        await a.send('{"type":"say","content":%s}' % raw)
        m = await a.recv()
        if m["type"] == "error":
            check_error(m, ("bad_json", "bad_content"))
        else:
            assert m["type"] == "say", m
            await b.expect("say")
        await still_open(a)
    finally:
        await close_all([a, b])


@async_test()
async def test_surrogate_pair_escapes_count_as_one(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send('{"type":"login","name":"%s"}' % ("\\ud83d\\ude00" * 32))
        users = await c.expect("user_list")
        assert users["user_list"][-1]["name"] == "\U0001F600" * 32
        await c.expect("login")
        await c.expect("session")
        await c.send('{"type":"say","content":"%s"}' % ("\\ud83d\\ude00" * 4096))
        m = await c.expect("say")
        assert m["content"] == "\U0001F600" * 4096
    finally:
        await c.close()


@pytest.mark.parametrize("data", [
    b'{"type":"login","name":"a"}\x00',
    b'{"type":"login","name":"a"}\x00{"type":"say"}',
    b'{"type":"login","name":"a"} trailing',
    b'{"type":"login","name":"a"}{"type":"login","name":"b"}',
    b'{"type":"login","name":"a\x00b"}',
    b'{"type":"login","name":"a\x01"}',
    b"{'type':'login','name':'a'}",
    b'{"type":"login","name":"a",}',
], ids=["trailing_nul", "nul_then_json", "trailing_text", "two_objects", "raw_nul_in_string",
        "raw_ctrl_in_string", "single_quotes", "trailing_comma"])
def test_invalid_json_text(server, data):
    """Not JSON (trailing bytes after the object, raw control characters in a
    string, ...): bad_json, whatever a C string function would make of it."""
    ws = RawWS(server.ws_port)
    try:
        ws.send_frame(0x1, data)
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "bad_json", m
        uid, users = ws.login("after")
        assert [u["name"] for u in users] == ["after"]
    finally:
        ws.close()


@async_test()
async def test_duplicate_json_keys_do_not_crash(server):
    c = await Client.connect(server.ws_port)
    try:
        await c.send('{"type":"login","type":"login","name":"a","name":"b"}')
        m = await c.recv()
        assert m["type"] in ("user_list", "error"), m
        if m["type"] == "user_list":
            await c.expect("login")
            await c.expect("session")
        await c.send('{"type":"pong"}')
        await c.send("nonsense")
        await c.error("bad_json")
    finally:
        await c.close()
