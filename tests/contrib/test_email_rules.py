"""The batch e-mail's pure parts: which addresses pass, how messages are rendered, which SMTP
answers are worth another try."""

from __future__ import annotations

from string import Template

import pytest
from pydantic import ValidationError

from crisper.contrib.batch_email import BatchEmail, Recipient, SmtpFailure, SmtpServer


@pytest.mark.parametrize("to, ok", [
    ("ada@example.com", True),
    ("first.last+tag@mail.example.co.uk", True),
    ("ada@example.com, eve@example.com", False),   # a second recipient
    ("Ada <ada@example.com>", False),               # a display name
    ("ada@example.com\r\nBcc: eve@example.com", False),
    ("ada", False),
    ("@example.com", False),
    ("a" * 65 + "@example.com", False),
])
def test_a_recipient_is_one_plain_address(to: str, ok: bool) -> None:
    if ok:
        assert Recipient(to=to).to == to
    else:
        with pytest.raises(ValidationError):
            Recipient(to=to)


def mailer(subject: str = "Hi $name", html: str | None = "<b>$name</b>") -> BatchEmail:
    return BatchEmail("t", SmtpServer("localhost"), "news@shop.example", Template(subject),
                      Template("Dear $name, $offer"), Template(html) if html else None,
                      None, None, "")


def test_values_fill_the_templates_and_are_escaped_in_html() -> None:
    message = mailer().render(Recipient(to="a@b.example", values={"name": "<Al & Bo>"}),
                              {"offer": "$5 off", "name": "nobody"})
    assert message["Subject"] == "Hi <Al & Bo>" and message["To"] == "a@b.example"
    assert message.get_body(("plain",)).get_content() == "Dear <Al & Bo>, $5 off\n"
    assert "<b>&lt;Al &amp; Bo&gt;</b>" in message.get_body(("html",)).get_content()


@pytest.mark.parametrize("values, error", [
    ({"offer": "x"}, "no value for $name in the template"),
    ({"offer": "x", "name": "Al\r\nBcc: eve@example.com"}, "the subject would contain"),
])
def test_a_message_that_cannot_be_rendered_safely_is_refused(values: dict[str, str],
                                                             error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("$", r"\$")):
        mailer().render(Recipient(to="a@b.example", values=values), {})


@pytest.mark.parametrize("code, transient", [
    (None, True), (421, True), (450, True), (451, True), (452, True),
    (500, False), (550, False), (552, False), (554, False), (250, False),
])
def test_4xx_and_no_answer_are_transient_5xx_permanent(code: int | None, transient: bool
                                                       ) -> None:
    assert SmtpFailure(code, "x").transient is transient
