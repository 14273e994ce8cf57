"""The demo documents in `samples/`: what each one says and how its run should end.

`tools/make_samples.py` renders these into .txt and .pdf files, `expected.json`, the manifests
and the README. Totals are computed from the line items, so each document adds up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROCESSED = "PROCESSED"
FAILED = "FAILED"
NEEDS_REVIEW = "NEEDS_REVIEW"

Item = tuple[str, float, float]  # description, quantity, unit price; a price < 0 means "no price printed"


@dataclass(frozen=True)
class Doc:
    """One sample document.

    `total_label` and `currency` shape the total line (`Total: $1,234.50`, `TOTAL 12.30`,
    `Total Due: EUR 980.00`); when `total_label` is empty the document has no total line and its run fails.
    """

    path: str
    status: str
    note: str
    header: tuple[str, ...]
    items: tuple[Item, ...]
    number: str | None = None
    tax_label: str = ""
    tax_rate: float = 0.0
    total_label: str = "Total:"
    currency: str = "$"
    footer: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def workflow(self) -> str:
        """Receipts go to workflow_receipt, invoices (and the other paperwork) to workflow_invoice."""
        return "workflow_receipt" if self.path.startswith("receipts/") else "workflow_invoice"


_NO_PRICE = -1.0

INVOICES: tuple[Doc, ...] = (
    Doc(
        path="invoices/acme-gmbh-inv-2026-0042.txt",
        status=PROCESSED,
        note="Vendor line, ISO date, Total Due in EUR",
        number="INV-2026-0042",
        header=(
            "Acme GmbH",
            "Industriestrasse 12, 70565 Stuttgart, Germany",
            "VAT ID: DE811907980",
            "",
            "INVOICE",
            "Vendor: Acme GmbH",
            "Invoice Number: INV-2026-0042",
            "Date: 2026-10-03",
            "Bill to: Contoso Ltd, 1 Harbour Way, Dublin D02 X285, Ireland",
        ),
        items=(("Hydraulic pump HP-200", 2, 310.00), ("Seal kit SK-14", 5, 21.50), ("Freight (pallet)", 1, 75.00)),
        tax_label="VAT 19%",
        tax_rate=0.19,
        total_label="Total Due:",
        currency="EUR",
        footer=("Payment terms: Net 30", "IBAN: DE89 3704 0044 0532 0130 00  BIC: COBADEFFXXX"),
        metadata={"customer": "contoso", "po": "PO-7731"},
    ),
    Doc(
        path="invoices/northwind-1042.txt",
        status=PROCESSED,
        note="No Vendor line (first line is the vendor), dd/mm/yyyy date",
        number="1042",
        header=(
            "Northwind Traders Ltd",
            "44 Wharf Road, London N1 7GR, United Kingdom",
            "",
            "Invoice #: 1042",
            "Date: 03/10/2026",
            "Customer: Fabrikam Foods, 9 Mill Lane, Leeds LS1 4AP",
        ),
        items=(("Earl Grey tea, 12 x 500 g", 4, 86.25), ("Darjeeling first flush, 6 x 250 g", 3, 127.50)),
        tax_label="VAT 20%",
        tax_rate=0.20,
        currency="GBP",
        footer=("Please pay within 14 days.", "Sort code 20-00-00  Account 55779911"),
        metadata={"customer": "fabrikam"},
    ),
    Doc(
        path="invoices/blue-harbor-design-bhd-7781.txt",
        status=PROCESSED,
        note="Written-out date",
        number="BHD-7781",
        header=(
            "Blue Harbor Design Studio",
            "210 Pier Avenue, Suite 4, Santa Monica, CA 90405",
            "",
            "Vendor: Blue Harbor Design Studio",
            "Invoice Number: BHD-7781",
            "Date: October 3, 2026",
            "Client: Tailspin Toys Inc.",
        ),
        items=(("Brand identity workshop (day)", 2, 1200.00), ("Logo refinements (hours)", 16, 150.00)),
        footer=("Payment terms: Net 15", "Thank you for your business!"),
    ),
    Doc(
        path="invoices/globex-consulting-gx-3310.txt",
        status=NEEDS_REVIEW,
        note="Total above 10,000: a person reviews it",
        number="GX-3310",
        header=(
            "Globex Consulting LLC",
            "1 Cypress Creek Parkway, Houston, TX 77090",
            "",
            "INVOICE",
            "Invoice Number: GX-3310",
            "Date: 2026-09-30",
            "Bill to: Woodgrove Bank, Treasury Operations",
        ),
        items=(("Q3 advisory retainer", 1, 12500.00), ("Data migration sprint (days)", 5, 1250.00)),
        footer=("Payment terms: Net 45", "Wire: Globex Consulting LLC, ABA 021000021, Acct 4433221100"),
        metadata={"customer": "woodgrove", "quarter": "2026Q3"},
    ),
    Doc(
        path="invoices/packing-slip-ps-5531.txt",
        status=FAILED,
        note="A packing slip: quantities only, no amount to extract",
        header=(
            "Contoso Warehousing",
            "Unit 7, Logistics Park, Rotterdam 3089 JB, Netherlands",
            "",
            "PACKING SLIP",
            "Packing Slip #: PS-5531",
            "Date: 2026-10-05",
            "Ship to: Alpine Ski House, Bahnhofstrasse 3, 6300 Zug",
        ),
        items=(("Ski boots, size 42", 6, _NO_PRICE), ("Ski poles 120 cm", 6, _NO_PRICE), ("Wax kit", 2, _NO_PRICE)),
        total_label="",
        footer=("Packed by: M. de Vries", "Cartons: 3   Weight: 41 kg"),
    ),
    Doc(
        path="invoices/faded-scan-0193.txt",
        status=FAILED,
        note="A faded scan: the OCR text lost the line with the amount due",
        header=(
            "L1tware lnc.",
            "",
            "Inv0ice Numb3r: lNV-2O26-O193",
            "D te: 2O26-O9-14",
        ),
        items=(("Serv ce agre ment", 1, _NO_PRICE), ("On-s te supp rt (hrs)", 12, _NO_PRICE)),
        total_label="",
        footer=("[illegible]", "... ank you f r y ur bus ness"),
    ),
    Doc(
        path="invoices/cloudnine-hosting-cn-88120.txt",
        status=PROCESSED,
        note="Upper-case TOTAL without a colon or currency",
        number="CN-88120",
        header=(
            "CloudNine Hosting B.V.",
            "Keizersgracht 520, 1017 EK Amsterdam",
            "",
            "Invoice Number: CN-88120",
            "Date: 2026-10-01",
            "Account: fourthcoffee-prod",
        ),
        items=(("VPS 8 vCPU / 32 GB, October", 2, 89.00), ("Block storage 500 GB", 1, 24.00), ("Backups", 1, 12.00)),
        tax_label="VAT 21%",
        tax_rate=0.21,
        total_label="TOTAL",
        currency="",
        footer=("Charged to card ending 4242 on 2026-10-01.",),
    ),
    Doc(
        path="invoices/initech-annual-license-it-2026-118.txt",
        status=NEEDS_REVIEW,
        note="Annual licence in USD above 10,000",
        number="IT-2026-118",
        header=(
            "Initech Software Inc.",
            "4120 Freidrich Lane, Austin, TX 78744",
            "",
            "Vendor: Initech Software Inc.",
            "Invoice Number: IT-2026-118",
            "Date: October 1, 2026",
            "Licensee: Proseware Inc.",
        ),
        items=(("TPS Reports Enterprise, annual, 40 seats", 40, 285.00), ("Premium support, annual", 1, 1000.00)),
        total_label="Total Due:",
        currency="USD",
        footer=("Payment terms: Net 30",),
        metadata={"customer": "proseware", "renewal": "2027"},
    ),
    Doc(
        path="invoices/greenleaf-landscaping-gl-2291.txt",
        status=PROCESSED,
        note="Small services invoice with sales tax",
        number="GL-2291",
        header=(
            "Greenleaf Landscaping",
            "88 Orchard Road, Portland, OR 97205",
            "",
            "Invoice #: GL-2291",
            "Date: 09/28/2026",
            "Property: 17 Maple Court",
        ),
        items=(("Lawn care, September", 4, 85.00), ("Hedge trimming", 1, 160.00), ("Green waste removal", 2, 45.00)),
        tax_label="Sales tax 6%",
        tax_rate=0.06,
        footer=("Checks payable to Greenleaf Landscaping.",),
    ),
    Doc(
        path="invoices/stark-industrial-supply-sis-40917.pdf",
        status=PROCESSED,
        note="PDF, several line items and sales tax",
        number="SIS-40917",
        header=(
            "Stark Industrial Supply",
            "500 Foundry Street, Pittsburgh, PA 15222",
            "",
            "Vendor: Stark Industrial Supply",
            "Invoice Number: SIS-40917",
            "Date: 2026-10-02",
            "Ship to: Lamna Manufacturing, Dock 3",
        ),
        items=(
            ("Steel bolts M12 (box of 100)", 10, 48.90),
            ("Angle grinder 125 mm", 3, 189.00),
            ("Safety gloves (pair)", 40, 6.75),
            ("Welding rods 3.2 mm, 5 kg", 8, 134.00),
        ),
        tax_label="Sales tax 7%",
        tax_rate=0.07,
        footer=("Payment terms: Net 30",),
        metadata={"customer": "lamna", "site": "pittsburgh"},
    ),
    Doc(
        path="invoices/umbrella-labs-inv-88213.pdf",
        status=PROCESSED,
        note="PDF, Total Due in EUR, written-out date",
        number="INV-88213",
        header=(
            "Umbrella Labs SARL",
            "14 Rue des Sciences, 69007 Lyon, France",
            "",
            "Invoice Number: INV-88213",
            "Date: September 22, 2026",
            "Bill to: Coho Vineyard, Service Qualite",
        ),
        items=(("Lab analysis, full panel", 6, 240.00), ("Sample courier", 2, 55.00)),
        tax_label="TVA 20%",
        tax_rate=0.20,
        total_label="Total Due:",
        currency="EUR",
        footer=("Paiement a 30 jours.",),
    ),
    Doc(
        path="invoices/wayne-construction-progress-wc-551.pdf",
        status=NEEDS_REVIEW,
        note="PDF, construction progress bill well above 10,000",
        number="WC-551",
        header=(
            "Wayne Construction Co.",
            "1007 Mountain Drive, Gotham, NJ 07001",
            "",
            "PROGRESS INVOICE",
            "Invoice Number: WC-551",
            "Date: 2026-09-30",
            "Project: Relecloud data centre, phase 2",
        ),
        items=(("Foundation works, 60% complete", 1, 31500.00), ("Structural steel delivery", 1, 14200.00)),
        tax_label="Sales tax 5.5%",
        tax_rate=0.055,
        footer=("Retention of 5% is held until practical completion.",),
        metadata={"customer": "relecloud", "project": "dc-phase-2"},
    ),
    Doc(
        path="invoices/hooli-cloud-credits-hc-0999.pdf",
        status=PROCESSED,
        note="PDF, 9,999.99: just under the review threshold",
        number="HC-0999",
        header=(
            "Hooli Cloud",
            "1600 Hooli Way, Palo Alto, CA 94301",
            "",
            "Invoice #: HC-0999",
            "Date: 10/01/2026",
            "Billing account: 01A2-B3C4-D5E6",
        ),
        items=(("Prepaid compute credits", 1, 9999.99),),
        total_label="TOTAL",
        currency="",
        footer=("Credits expire 12 months after purchase.",),
    ),
    Doc(
        path="invoices/delivery-note-dn-7702.pdf",
        status=FAILED,
        note="PDF delivery note: no prices, no amount to extract",
        header=(
            "Fourth Coffee Roasters",
            "22 Bean Street, Seattle, WA 98101",
            "",
            "DELIVERY NOTE",
            "Delivery Note #: DN-7702",
            "Date: 2026-10-04",
            "Deliver to: Margie's Travel, front desk",
        ),
        items=(("Espresso beans 1 kg", 12, _NO_PRICE), ("Decaf beans 1 kg", 4, _NO_PRICE)),
        total_label="",
        footer=("Received by: ____________________", "Signature: ____________________"),
    ),
    Doc(
        path="invoices/contoso-office-furniture-cof-318.pdf",
        status=PROCESSED,
        note="PDF, Vendor line and dd/mm/yyyy date",
        number="COF-318",
        header=(
            "Contoso Office Furniture",
            "Avenida da Liberdade 110, 1250-146 Lisboa, Portugal",
            "",
            "Vendor: Contoso Office Furniture",
            "Invoice Number: COF-318",
            "Date: 29/09/2026",
        ),
        items=(("Ergonomic chair", 2, 340.00), ("Standing desk frame", 1, 420.00)),
        tax_label="IVA 23%",
        tax_rate=0.23,
        total_label="Total Due:",
        currency="EUR",
    ),
)

RECEIPTS: tuple[Doc, ...] = (
    Doc(
        path="receipts/corner-cafe-r-88.txt",
        status=PROCESSED,
        note="Till receipt, TOTAL without a colon",
        number="R-88",
        header=("The Corner Cafe", "3 Market Square, Cambridge", "", "Receipt #: R-88", "Date: 2026-10-03 08:41"),
        items=(("Flat white", 2, 3.40), ("Almond croissant", 1, 3.10), ("Orange juice", 1, 2.40)),
        total_label="TOTAL",
        currency="",
        footer=("CARD  **** 1881", "Thank you, see you soon!"),
        metadata={"employee": "e-104", "expense": "meals"},
    ),
    Doc(
        path="receipts/metro-taxi-5521.txt",
        status=PROCESSED,
        note="Taxi receipt with a tip line",
        number="5521",
        header=("Metro Taxi Co.", "Licence 7Y-2204", "", "Receipt #: 5521", "Date: October 2, 2026"),
        items=(("Fare, Airport to Downtown", 1, 29.80), ("Tip", 1, 5.00)),
        footer=("Driver: K. Osei   Vehicle: 418",),
    ),
    Doc(
        path="receipts/hardware-depot-hd-77310.txt",
        status=PROCESSED,
        note="Store receipt with sales tax",
        number="HD-77310",
        header=(
            "Hardware Depot #112",
            "900 Industrial Blvd, Dayton, OH 45402",
            "",
            "Receipt #: HD-77310",
            "Date: 2026-09-29",
        ),
        items=(("Cordless drill 18V", 1, 129.00), ("Drill bit set", 1, 24.99), ("Wood screws 4x40 (200)", 3, 8.49)),
        tax_label="Sales tax 7.25%",
        tax_rate=0.0725,
        footer=("VISA **** 0417  APPROVED",),
    ),
    Doc(
        path="receipts/faded-thermal-r-1207.txt",
        status=FAILED,
        note="Faded thermal paper: the bottom half did not scan",
        header=("QU CK MART", "", "Receipt #: R-1207", "Date: 2026-09-27"),
        items=(("B TTERY AA 4PK", 1, _NO_PRICE), ("W TER 1.5L", 2, _NO_PRICE)),
        total_label="",
        footer=("........................", "(faded)"),
    ),
    Doc(
        path="receipts/grand-hotel-folio-gh-20931.txt",
        status=PROCESSED,
        note="Hotel folio, three nights plus city tax",
        number="GH-20931",
        header=(
            "Grand Hotel Bellevue",
            "Quai du Mont-Blanc 17, 1201 Geneve",
            "",
            "Vendor: Grand Hotel Bellevue",
            "Receipt #: GH-20931",
            "Date: 2026-10-03",
            "Guest: A. Fischer, room 512",
        ),
        items=(("Room, 3 nights", 3, 420.00), ("Breakfast", 3, 38.00), ("City tax", 3, 4.40)),
        tax_label="VAT 3.8%",
        tax_rate=0.038,
        currency="CHF",
        footer=("Paid by AMEX **** 3007",),
        metadata={"employee": "e-221", "trip": "geneva-2026-10"},
    ),
    Doc(
        path="receipts/city-parking-p-4410.txt",
        status=PROCESSED,
        note="Parking ticket receipt",
        number="P-4410",
        header=("City Parking Garage", "Level 2, 55 Main Street", "", "Receipt #: P-4410", "Date: 10/03/2026"),
        items=(("Parking 09:05 - 15:05 (6 h)", 6, 3.00),),
        total_label="TOTAL",
        currency="",
        footer=("Have a safe journey.",),
    ),
    Doc(
        path="receipts/pharmacy-plus-rx-3094.pdf",
        status=PROCESSED,
        note="PDF pharmacy receipt",
        number="RX-3094",
        header=("Pharmacy Plus", "12 High Street, Bristol BS1 2AW", "", "Receipt #: RX-3094", "Date: 2026-10-02"),
        items=(("Ibuprofen 200 mg x 24", 2, 3.29), ("Plasters, assorted", 1, 4.50), ("Sunscreen SPF 50", 1, 16.56)),
        footer=("Contactless **** 6620",),
    ),
    Doc(
        path="receipts/skyway-airlines-sa-66021.pdf",
        status=PROCESSED,
        note="PDF e-ticket receipt, Total Due in EUR",
        number="SA-66021",
        header=(
            "Skyway Airlines",
            "Flughafenstrasse 1, 60549 Frankfurt",
            "",
            "Receipt #: SA-66021",
            "Date: September 30, 2026",
            "Passenger: FISCHER/ANNA MS",
        ),
        items=(("FRA-GVA-FRA economy fare", 1, 498.00), ("Taxes and carrier charges", 1, 144.10)),
        total_label="Total Due:",
        currency="EUR",
        footer=("E-ticket 220-4412889013",),
        metadata={"employee": "e-221", "trip": "geneva-2026-10"},
    ),
    Doc(
        path="receipts/office-supplies-mart-os-1180.pdf",
        status=PROCESSED,
        note="PDF store receipt, TOTAL without a colon",
        number="OS-1180",
        header=(
            "Office Supplies Mart",
            "77 Commerce Way, Reno, NV 89501",
            "",
            "Receipt #: OS-1180",
            "Date: 2026-10-01",
        ),
        items=(("Printer paper A4 (5 reams)", 2, 24.99), ("Gel pens (12)", 2, 9.99), ("Stapler", 1, 14.59)),
        tax_label="Sales tax 8.265%",
        tax_rate=0.08265,
        total_label="TOTAL",
        currency="",
    ),
    Doc(
        path="receipts/lakeside-motors-deposit-lm-1000.pdf",
        status=NEEDS_REVIEW,
        note="PDF, exactly 10,000.00: at the threshold, so it goes to review",
        number="LM-1000",
        header=(
            "Lakeside Motors",
            "4 Lakeshore Drive, Madison, WI 53703",
            "",
            "Receipt #: LM-1000",
            "Date: October 3, 2026",
            "Customer: Wide World Importers",
        ),
        items=(("Vehicle deposit, stock no. 8841", 1, 10000.00),),
        footer=("Deposit is refundable until delivery.",),
        metadata={"customer": "wideworld", "kind": "deposit"},
    ),
    Doc(
        path="receipts/bookshop-b-2207.pdf",
        status=PROCESSED,
        note="PDF, Vendor line and a single item",
        number="B-2207",
        header=(
            "Riverside Books",
            "8 Bridge Street, York YO1 6DD",
            "",
            "Vendor: Riverside Books",
            "Receipt #: B-2207",
            "Date: 02/10/2026",
        ),
        items=(("Designing Data-Intensive Applications", 1, 42.99),),
        footer=("Books are zero-rated for VAT.",),
    ),
)

DOCS: tuple[Doc, ...] = INVOICES + RECEIPTS

# The documents listed in samples/manifest.csv and samples/manifest.jsonl.
MANIFEST: tuple[str, ...] = (
    "invoices/acme-gmbh-inv-2026-0042.txt",
    "invoices/globex-consulting-gx-3310.txt",
    "invoices/stark-industrial-supply-sis-40917.pdf",
    "receipts/corner-cafe-r-88.txt",
    "receipts/skyway-airlines-sa-66021.pdf",
)

README = """# Sample documents

{count} demo documents for the Extend emulator's content-driven workflows: invoices go to
`workflow_invoice`, receipts to `workflow_receipt`. Each one ends in a known state, so a demo or
an end-to-end test can check every run: {processed} are PROCESSED, {review} go to NEEDS_REVIEW and
{failed} FAILED.

How the workflows read a document (PDFs through their extracted text):

- invoice number: a line `Invoice Number: INV-2026-0042`, `Invoice #: 1042` or `Receipt #: R-88`;
- date: `Date: 2026-10-03`, `Date: 03/10/2026` or `Date: October 3, 2026`;
- vendor: a `Vendor: ...` line, else the first non-empty line;
- total: `Total: $1,234.50`, `TOTAL 12.30` or `Total Due: EUR 980.00`.

No total means the run FAILS; a total of 10,000 or more means NEEDS_REVIEW (a person must
review it); anything else is PROCESSED. The word "total" appears only on the total line, and not
at all in the documents that fail.

| File | Workflow | Expected | Invoice number | Total | What it shows |
| --- | --- | --- | --- | --- | --- |
{rows}

## Other files

- `expected.json`: relative path -> `workflow`, terminal `status`, and for PROCESSED and
  NEEDS_REVIEW runs the extracted `invoice_number` and `total` (a number).
- `manifest.csv` (`path,workflow,metadata`, metadata a JSON object string) and `manifest.jsonl`
  (the same rows as JSON lines): five documents with per-run metadata, for batch submission.
  Paths are relative to this folder.

## Regenerating

Everything here is generated from `tools/sample_data.py`:

    python tools/make_samples.py          # rewrite samples/ and check it
    python tools/make_samples.py --check  # check only: each file reads back to its expected outcome

The check extracts each PDF's text with pypdf and applies the rules above. PDFs use the core
fonts only, so each stays under 10 KB.
"""
