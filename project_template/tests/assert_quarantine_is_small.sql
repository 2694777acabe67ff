-- Fails when more than max_quarantine_share of the records read could not be loaded.
with counts as (
    select
        (select count(*) from {{ source('logs', 'conversations_quarantine') }}) as quarantined,
        (select count(*) from {{ source('logs', 'conversations') }}) as loaded
)
select * from counts
where quarantined > {{ var('max_quarantine_share', 0.05) }} * (quarantined + loaded)
