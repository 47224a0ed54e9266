-- Version 3: the fleet's bans ([response] share = true). Every ban and unban a daemon decides,
-- with the instance that decided it; `NOTIFY maillogsentinel_bans` in the same transaction
-- tells the other daemons, which read the rows after the last id they applied.
CREATE TABLE bans (
    id            BIGSERIAL   PRIMARY KEY,
    instance      TEXT        NOT NULL,
    time          TIMESTAMPTZ NOT NULL,
    action        TEXT        NOT NULL,
    target        CIDR        NOT NULL,
    rule          TEXT        NOT NULL,
    duration_secs BIGINT      NOT NULL,
    expires       TIMESTAMPTZ,
    ip            INET,
    username      TEXT        NOT NULL,
    mode          TEXT        NOT NULL,
    outcome       TEXT        NOT NULL,
    country       TEXT        NOT NULL,
    asn           BIGINT,
    as_org        TEXT        NOT NULL
);
CREATE INDEX bans_time ON bans (time);
