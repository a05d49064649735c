"""One builder per event type, each returning a complete record (every schema field present).

Complete records look exactly like what ``AvroCodec.decode`` returns, so code fed straight from
the generator (tests, benchmarks) sees the same shapes as code fed from Kafka.
"""

from __future__ import annotations

from typing import Any

from cxstream.simulate.reference import City

Record = dict[str, Any]


def customer_registered(
    event_id: str,
    t: int,
    customer_id: str,
    full_name: str,
    email: str | None,
    phone: str | None,
    national_id: str | None,
    birth_year: int,
    city: str,
    risk_profile: str,
    segment: str,
    customer_since: int,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "full_name": full_name,
        "email": email,
        "phone": phone,
        "national_id": national_id,
        "birth_year": birth_year,
        "city": city,
        "risk_profile": risk_profile,
        "segment": segment,
        "customer_since": customer_since,
        "source": "core-banking",
    }


def interaction(
    event_id: str,
    t: int,
    customer_id: str | None,
    anonymous_id: str | None,
    channel: str,
    action: str,
    topic: str,
    session_id: str | None,
    duration_ms: int | None,
    resolved: bool | None,
    search_query: str | None,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "anonymous_id": anonymous_id,
        "channel": channel,
        "action": action,
        "topic": topic,
        "session_id": session_id,
        "duration_ms": duration_ms,
        "resolved": resolved,
        "search_query": search_query,
        "source": source,
    }


def access(
    event_id: str,
    t: int,
    principal_id: str,
    principal_type: str,
    action: str,
    source: str,
    *,
    target_customer_id: str | None = None,
    record_count: int = 1,
    staff_team: str | None = None,
    ip: str | None = None,
    device_id: str | None = None,
    user_agent: str | None = None,
    city: City | None = None,
    auth_method: str | None = None,
    amount_minor: int | None = None,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "principal_id": principal_id,
        "principal_type": principal_type,
        "action": action,
        "target_customer_id": target_customer_id,
        "record_count": record_count,
        "staff_team": staff_team,
        "ip": ip,
        "device_id": device_id,
        "user_agent": user_agent,
        "geo_country": city.country if city is not None else None,
        "geo_city": city.name if city is not None else None,
        "geo_lat": city.lat if city is not None else None,
        "geo_lon": city.lon if city is not None else None,
        "auth_method": auth_method,
        "amount_minor": amount_minor,
        "source": source,
    }


def transaction(
    event_id: str,
    t: int,
    customer_id: str,
    transaction_id: str,
    account_id: str,
    amount_minor: int,
    currency: str,
    direction: str,
    category: str,
    channel: str,
    merchant: str | None,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "transaction_id": transaction_id,
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "direction": direction,
        "category": category,
        "channel": channel,
        "merchant": merchant,
        "source": source,
    }


def chat_session(
    event_id: str,
    t: int,
    customer_id: str,
    session_id: str,
    started_at: int,
    agent_joined_at: int | None,
    agent_id: str | None,
    message_count: int,
    resolved: bool,
    topic: str,
    transcript_excerpt: str | None,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "session_id": session_id,
        "started_at": started_at,
        "agent_joined_at": agent_joined_at,
        "agent_id": agent_id,
        "bot_only": agent_id is None,
        "message_count": message_count,
        "resolved": resolved,
        "topic": topic,
        "transcript_excerpt": transcript_excerpt,
        "source": "chat-platform",
    }


def feedback_submitted(
    event_id: str,
    t: int,
    customer_id: str,
    feedback_id: str,
    channel: str,
    category: str,
    severity: str,
    department: str,
    text: str | None,
    contact_email: str | None,
    contact_phone: str | None,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "feedback_id": feedback_id,
        "channel": channel,
        "category": category,
        "severity": severity,
        "department": department,
        "text": text,
        "contact_email": contact_email,
        "contact_phone": contact_phone,
        "source": source,
    }


def feedback_status(
    event_id: str,
    t: int,
    customer_id: str,
    feedback_id: str,
    status: str,
    department: str | None,
    agent_id: str | None,
    note: str | None,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "feedback_id": feedback_id,
        "status": status,
        "department": department,
        "agent_id": agent_id,
        "note": note,
        "source": "helpdesk",
    }


def survey_response(
    event_id: str,
    t: int,
    customer_id: str,
    survey_id: str,
    dimension: str,
    score: int,
    channel: str,
    comment: str | None,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "survey_id": survey_id,
        "dimension": dimension,
        "score": score,
        "channel": channel,
        "comment": comment,
        "source": "survey-platform",
    }


def product_holding(
    event_id: str,
    t: int,
    customer_id: str,
    product_id: str,
    product_type: str,
    change: str,
    recommendation_id: str | None,
    channel: str,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "product_id": product_id,
        "product_type": product_type,
        "change": change,
        "recommendation_id": recommendation_id,
        "channel": channel,
        "source": source,
    }


def recommendation_feedback(
    event_id: str,
    t: int,
    customer_id: str,
    recommendation_id: str,
    product_id: str,
    action: str,
    position: int | None,
    channel: str,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "recommendation_id": recommendation_id,
        "product_id": product_id,
        "action": action,
        "position": position,
        "channel": channel,
        "source": source,
    }


def consent_changed(
    event_id: str, t: int, customer_id: str, consent: str, granted: bool, channel: str, source: str
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "consent": consent,
        "granted": granted,
        "channel": channel,
        "source": source,
    }


def erasure_requested(
    event_id: str,
    t: int,
    customer_id: str,
    request_id: str,
    channel: str,
    reason: str | None,
    source: str,
) -> Record:
    return {
        "event_id": event_id,
        "occurred_at": t,
        "customer_id": customer_id,
        "request_id": request_id,
        "channel": channel,
        "reason": reason,
        "source": source,
    }
