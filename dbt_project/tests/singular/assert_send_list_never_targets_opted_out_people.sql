-- A row here is a nurture message due to a person with ANY opted-out CRM record (matched on the
-- recipient address, not only through lead_id): sending it would break their consent.
with

send_list as (
    select * from {{ ref('send_list_nurture') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
)

select
    send_list.idempotency_key,
    send_list.recipient,
    contacts.contact_id
from send_list
inner join contacts
    on send_list.recipient = contacts.email
where contacts.email_opt_out
